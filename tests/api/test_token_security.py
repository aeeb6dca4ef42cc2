"""Issue 11, findings 1 and 3: throttles keyed on the real client, tokens that die with the
password (or the account, or the membership), as a client sees them through the test client.

The same attacks against a real gunicorn are in tests/e2e/test_security_e2e.py.
"""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobs.models import CompanyMember
from tests.factories import ApiClientFactory, CompanyFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
JOBS_URL = "/api/v1/jobs/"
PASSWORD = "pass-word-123"


def post_as(address: str, url: str, body: dict[str, Any], forwarded_for: str = "") -> Any:
    """A POST from the TCP peer ``address`` carrying an X-Forwarded-For header."""
    extra = {"REMOTE_ADDR": address}
    if forwarded_for:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return APIClient().post(url, body, format="json", **extra)


def tokens_for(user: Any) -> dict[str, str]:
    response = post_as("127.0.0.1", TOKEN_URL, {"username": user.username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return dict(response.json())


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


# --- finding 1: the login throttle and X-Forwarded-For ------------------------------------------


def test_a_new_forwarded_for_on_every_attempt_does_not_dodge_the_token_throttle(
    settings: Any, api_user: Any
) -> None:
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "5/minute"
    statuses = [
        post_as(
            "198.51.100.20",
            TOKEN_URL,
            {"username": api_user.username, "password": f"wrong-{n}"},
            forwarded_for=f"10.0.{n // 250}.{n % 250}",
        ).status_code
        for n in range(70)
    ]

    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 65
    right = post_as(
        "198.51.100.20",
        TOKEN_URL,
        {"username": api_user.username, "password": PASSWORD},
        forwarded_for="203.0.113.250",
    )
    assert right.status_code == 429
    assert "access" not in right.json()
    # another client is not affected
    other = post_as(
        "198.51.100.21", TOKEN_URL, {"username": api_user.username, "password": PASSWORD}
    )
    assert other.status_code == 200


def test_a_new_forwarded_for_does_not_dodge_the_refresh_throttle(
    settings: Any, api_user: Any
) -> None:
    refresh = tokens_for(api_user)["refresh"]
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "3/minute"

    statuses = [
        post_as("198.51.100.30", REFRESH_URL, {"refresh": refresh}, f"10.1.0.{n}").status_code
        for n in range(10)
    ]

    assert statuses == [200] * 3 + [429] * 7


def test_behind_one_trusted_proxy_the_client_is_the_address_the_proxy_appended(
    settings: Any, api_user: Any
) -> None:
    """With JOBTRAIL_TRUSTED_PROXIES=1 the proxy (the TCP peer) appends the client's address;
    what the client wrote before it is not believed."""
    settings.JOBTRAIL_TRUSTED_PROXIES = 1
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "3/minute"
    wrong = {"username": api_user.username, "password": "wrong"}

    spoofed = [
        post_as("10.0.0.2", TOKEN_URL, wrong, f"192.0.2.{n}, 203.0.113.7").status_code
        for n in range(6)
    ]
    other_client = post_as("10.0.0.2", TOKEN_URL, wrong, "203.0.113.8")
    no_header = post_as("10.0.0.2", TOKEN_URL, wrong)  # not through the proxy: the peer itself

    assert spoofed == [401] * 3 + [429] * 3
    assert other_client.status_code == 401
    assert no_header.status_code == 401


def test_the_api_throttle_keys_an_anonymous_request_on_the_client_address(
    settings: Any, api_user: Any
) -> None:
    """The per-client API throttle's anonymous identity is the same client address."""
    from jobs.auth import ClientRateThrottle

    settings.JOBTRAIL_TRUSTED_PROXIES = 0
    request = (
        APIClient()
        .get(JOBS_URL, REMOTE_ADDR="198.51.100.40", HTTP_X_FORWARDED_FOR="1.2.3.4")
        .wsgi_request
    )
    assert ClientRateThrottle().get_ident(request) == "198.51.100.40"
    settings.JOBTRAIL_TRUSTED_PROXIES = 1
    assert ClientRateThrottle().get_ident(request) == "1.2.3.4"


# --- finding 3: tokens outlive a password change ------------------------------------------------


def test_a_password_change_revokes_the_access_and_refresh_tokens_issued_before(
    api_user: Any,
) -> None:
    tokens = tokens_for(api_user)
    assert bearer(tokens["access"]).get(JOBS_URL).status_code == 200

    user = get_user_model().objects.get(pk=api_user.pk)
    user.set_password("a-brand-new-pass-456")
    user.save()

    old_access = bearer(tokens["access"]).get(JOBS_URL)
    old_refresh = post_as("127.0.0.1", REFRESH_URL, {"refresh": tokens["refresh"]})
    assert old_access.status_code == 401 and old_access.json()["code"] == "token_revoked"
    assert old_refresh.status_code == 401 and old_refresh.json()["code"] == "token_revoked"
    assert "access" not in old_refresh.json()
    # the new password gets tokens that work
    fresh = post_as(
        "127.0.0.1",
        TOKEN_URL,
        {"username": api_user.username, "password": "a-brand-new-pass-456"},
    )
    assert fresh.status_code == 200
    assert bearer(fresh.json()["access"]).get(JOBS_URL).status_code == 200


def test_a_password_change_through_the_command_revokes_tokens(api_user: Any) -> None:
    from django.core.management import call_command

    tokens = tokens_for(api_user)
    company = api_user.company_membership.company.name

    call_command("create_api_client", company, api_user.username, password="another-pass-789")

    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"


def test_deactivation_revokes_tokens_for_good(api_user: Any) -> None:
    """Deactivated, then active again: the tokens issued before stay dead."""
    tokens = tokens_for(api_user)
    user = get_user_model().objects.get(pk=api_user.pk)
    user.is_active = False
    user.save()
    assert bearer(tokens["access"]).get(JOBS_URL).status_code == 401

    user.is_active = True
    user.save()

    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"
    refreshed = post_as("127.0.0.1", REFRESH_URL, {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 401 and refreshed.json()["code"] == "token_revoked"


def test_removal_from_the_company_revokes_tokens_even_once_added_back(api_user: Any) -> None:
    tokens = tokens_for(api_user)
    membership = CompanyMember.objects.get(user=api_user)
    company = membership.company
    membership.delete()
    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"

    CompanyMember.objects.create(user=api_user, company=company)

    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"
    refreshed = post_as("127.0.0.1", REFRESH_URL, {"refresh": tokens["refresh"]})
    assert refreshed.json()["code"] == "token_revoked"
    assert tokens_for(api_user)["access"]  # a new login works


@pytest.mark.parametrize("moved", ["user", "company"])
def test_a_member_row_given_to_someone_else_and_back_does_not_revive_tokens(
    api_user: Any, moved: str
) -> None:
    """The console's company page can point an existing member row at another user (or the
    row's user at another company); given back later, the row must not make the tokens
    issued before valid again (they name the row and its version)."""
    tokens = tokens_for(api_user)
    membership = CompanyMember.objects.get(user=api_user)
    before = getattr(membership, moved)
    setattr(membership, moved, (ApiClientFactory() if moved == "user" else CompanyFactory()))
    if moved == "user":  # the other user's own row makes way (one row per user)
        CompanyMember.objects.filter(user=membership.user).exclude(pk=membership.pk).delete()
    membership.save()
    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"

    setattr(membership, moved, before)
    membership.save()

    assert bearer(tokens["access"]).get(JOBS_URL).json()["code"] == "token_revoked"
    refreshed = post_as("127.0.0.1", REFRESH_URL, {"refresh": tokens["refresh"]})
    assert refreshed.json()["code"] == "token_revoked"
    assert bearer(tokens_for(api_user)["access"]).get(JOBS_URL).status_code == 200


def test_other_users_tokens_survive_a_password_change(api_user: Any, company: Any) -> None:
    colleague = ApiClientFactory(company=company)
    theirs = tokens_for(colleague)

    api_user.set_password("a-brand-new-pass-456")
    api_user.save()

    assert bearer(theirs["access"]).get(JOBS_URL).status_code == 200


def test_saving_a_user_without_changing_credentials_revokes_nothing(api_user: Any) -> None:
    tokens = tokens_for(api_user)
    user = get_user_model().objects.get(pk=api_user.pk)
    user.first_name = "Integration"
    user.save()
    user.save(update_fields=["last_login"])

    assert bearer(tokens["access"]).get(JOBS_URL).status_code == 200


def test_the_revocation_check_costs_no_query_of_its_own(api_user: Any) -> None:
    """Bearer authentication reads the user, its membership and company in one query, and the
    revocation check reads the membership's version from that same row."""
    from jobs.auth import CompanyJWTAuthentication

    access = tokens_for(api_user)["access"]
    auth = CompanyJWTAuthentication()
    token = auth.get_validated_token(access.encode())
    with CaptureQueriesContext(connection) as queries:
        user = auth.get_user(token)
    assert user.pk == api_user.pk
    assert len(queries) == 1


def test_a_token_minted_from_the_same_user_object_after_a_password_change_works(
    api_user: Any,
) -> None:
    """The membership loaded with the user follows the new version (what create_api_client and
    scripts that mint a token right after setting a password do)."""
    from jobs.auth import CompanyTokenObtainPairSerializer

    assert api_user.company_membership.token_version == 0  # loaded with the user
    api_user.set_password("a-brand-new-pass-456")
    api_user.save()

    token = CompanyTokenObtainPairSerializer.get_token(api_user)
    assert bearer(str(token.access_token)).get(JOBS_URL).status_code == 200  # type: ignore[attr-defined]


# --- signed tokens whose claims no request should read ------------------------------------------


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", lambda user: 10**20),
        ("exp", lambda user: 1e300),
        ("user_id", lambda user: float(user.pk)),  # 7.0 read as user 7
        ("user_id", lambda user: [user.pk]),
    ],
    ids=["exp-1e20", "exp-1e300", "user_id-float", "user_id-list"],
)
def test_a_signed_token_with_unreadable_claims_is_a_401_not_a_500(
    api_user: Any, claim: str, value: Any
) -> None:
    """Only a holder of the signing key can mint these; still, they are refused (an ``exp`` no
    date can hold raised OverflowError: a 500; ``user_id: 7.0`` read as user 7)."""
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

    access = AccessToken.for_user(api_user)
    access[claim] = value(api_user)
    client = bearer(str(access))
    client.raise_request_exception = False

    response = client.get(JOBS_URL)

    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    if claim == "exp":
        refresh = RefreshToken.for_user(api_user)
        refresh[claim] = value(api_user)
        refreshed = APIClient().post(REFRESH_URL, {"refresh": str(refresh)}, format="json")
        assert refreshed.status_code == 401, refreshed.content


@pytest.mark.parametrize("user_id", [True, False, 1.0, None, {"id": 1}])
def test_a_user_id_claim_must_be_an_integer_or_a_string(user_id: Any) -> None:
    """``True == 1`` in Python: a signed ``user_id: true`` would read as user 1."""
    from rest_framework_simplejwt.exceptions import InvalidToken

    from jobs.auth import CompanyJWTAuthentication

    with pytest.raises(InvalidToken), CaptureQueriesContext(connection) as queries:
        CompanyJWTAuthentication().get_user({"user_id": user_id, "company_id": None})
    assert len(queries) == 0  # refused before any lookup


def test_the_token_endpoints_refuse_unknown_fields(api_user: Any) -> None:
    """As every other body: {"username", "password", "scope"} is a 400, not a token."""
    login = {"username": api_user.username, "password": PASSWORD}
    response = post_as("127.0.0.1", TOKEN_URL, {**login, "scope": "admin"})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error"
    assert [e["field"] for e in response.json()["errors"]] == ["scope"]

    refresh = tokens_for(api_user)["refresh"]
    response = post_as("127.0.0.1", REFRESH_URL, {"refresh": refresh, "extra": 1})
    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["extra"]
    # the answer's field is no input either (the document lists only refresh)
    response = post_as("127.0.0.1", REFRESH_URL, {"refresh": refresh, "access": "x"})
    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["access"]
