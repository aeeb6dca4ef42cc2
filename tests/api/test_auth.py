"""Tokens, bearer authentication, company scoping and rate limits, as a client sees them."""

import socket
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from config.outage import Pause
from jobs import auth
from jobs.auth import CompanyTokenObtainPairSerializer
from jobs.models import Company, CompanyMember, Job
from tests.factories import ApiClientFactory, CompanyFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
JOBS_URL = "/api/v1/jobs/"
PASSWORD = "pass-word-123"  # tests.factories.UserFactory's password
PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert body["detail"]
    if code is not None:
        assert body["code"] == code
    return body


def obtain(username: str, password: str = PASSWORD) -> Any:
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json")


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def access_for(user: Any) -> AccessToken:
    refresh: RefreshToken = CompanyTokenObtainPairSerializer.get_token(user)  # type: ignore[assignment]
    return refresh.access_token


# --- token endpoint -------------------------------------------------------------------------


def test_good_credentials_give_tokens_carrying_the_company(api_user: Any, company: Company) -> None:
    response = obtain(api_user.username)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access = AccessToken(body["access"])
    assert access["company_id"] == str(company.pk)
    assert str(access["user_id"]) == str(api_user.pk)
    assert client_with(body["access"]).get(JOBS_URL).status_code == 200


def test_wrong_password_is_401(api_user: Any) -> None:
    response = obtain(api_user.username, "not-the-password")

    body = assert_problem(response, 401, "authentication_failed")
    assert "access" not in body
    assert response.has_header("WWW-Authenticate")


def test_unknown_user_is_401() -> None:
    assert_problem(obtain("nobody-by-that-name"), 401, "authentication_failed")


def test_inactive_user_is_401(company: Company) -> None:
    user = ApiClientFactory(company=company, is_active=False)

    body = assert_problem(obtain(user.username), 401)
    assert "access" not in body and "refresh" not in body


def test_staff_user_without_a_company_gets_the_wrong_password_answer() -> None:
    """The right password of a user who may not use the API answers exactly like a wrong one,
    so the token endpoint cannot be used to confirm an admin's password."""
    staff = UserFactory(is_staff=True, is_superuser=True)

    right = obtain(staff.username)
    wrong = obtain(staff.username, "not-the-password")

    body = assert_problem(right, 401, "authentication_failed")
    assert "access" not in body and "refresh" not in body
    assert right.content == wrong.content
    assert right["WWW-Authenticate"] == wrong["WWW-Authenticate"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"username": "someone"}, {"password": PASSWORD}, {"username": "", "password": ""}],
)
def test_missing_credentials_are_400(payload: dict[str, str]) -> None:
    response = APIClient().post(TOKEN_URL, payload, format="json")

    body = assert_problem(response, 400, "validation_error")
    assert body["errors"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": 5, "password": PASSWORD}, "username"),
        ({"username": "someone", "password": 5}, "password"),
        ({"username": ["someone"], "password": PASSWORD}, "username"),
        ({"username": "someone", "password": {"x": 1}}, "password"),
    ],
)
def test_credentials_that_are_not_strings_are_400(payload: dict[str, Any], field: str) -> None:
    """The document types them as strings; 5 was read as "5" and answered 401."""
    response = APIClient().post(TOKEN_URL, payload, format="json")

    body = assert_problem(response, 400, "validation_error")
    assert [error["field"] for error in body["errors"]] == [field]


def test_a_password_with_a_trailing_newline_still_logs_in(api_user: Any) -> None:
    """Passwords are trimmed, as simplejwt's own field does: a client reading its secret from
    a file keeps the newline."""
    response = APIClient().post(
        TOKEN_URL, {"username": api_user.username, "password": PASSWORD + "\n"}, format="json"
    )

    assert response.status_code == 200, response.content


def test_token_endpoint_refuses_malformed_json() -> None:
    response = APIClient().post(TOKEN_URL, '{"username": ', content_type="application/json")

    assert_problem(response, 400, "malformed_json")


# --- refresh --------------------------------------------------------------------------------


def test_refresh_gives_a_new_working_access_token_with_the_company(
    api_user: Any, company: Company
) -> None:
    tokens = obtain(api_user.username).json()

    response = APIClient().post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 200
    access = response.json()["access"]
    assert access != tokens["access"]
    assert AccessToken(access)["company_id"] == str(company.pk)
    client = client_with(access)
    created = client.post(JOBS_URL, {"type": "export"}, format="json")
    assert created.status_code == 201
    assert created.json()["company_id"] == str(company.pk)


@pytest.mark.parametrize("bad", ["not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
def test_refresh_with_a_bad_token_is_401(bad: str) -> None:
    response = APIClient().post(REFRESH_URL, {"refresh": bad}, format="json")

    body = assert_problem(response, 401, "invalid_token")
    assert "access" not in body


@pytest.mark.parametrize(
    "payload", [{}, {"refresh": ""}, {"refresh": None}, {"refresh": 5}, {"refresh": ["a.b.c"]}]
)
def test_refresh_without_a_token_is_400(payload: dict[str, Any]) -> None:
    response = APIClient().post(REFRESH_URL, payload, format="json")

    body = assert_problem(response, 400, "validation_error")
    assert body["errors"][0]["field"] == "refresh"


def test_refresh_with_an_access_token_is_401(api_user: Any) -> None:
    tokens = obtain(api_user.username).json()

    response = APIClient().post(REFRESH_URL, {"refresh": tokens["access"]}, format="json")

    assert_problem(response, 401, "invalid_token")


def test_refresh_for_a_deactivated_user_is_401(api_user: Any) -> None:
    tokens = obtain(api_user.username).json()
    api_user.is_active = False
    api_user.save()

    response = APIClient().post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert_problem(response, 401)


# --- bearer authentication on the API --------------------------------------------------------


def test_no_authorization_header_is_401() -> None:
    response = APIClient().get(JOBS_URL)

    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


# Every endpoint family that takes a bearer token: v1 jobs, webhooks, seeds 000, 002 and 003.
BEARER_ENDPOINTS = [
    ("get", JOBS_URL, None),
    ("get", "/api/v1/webhook-endpoints/", None),
    ("get", "/api/v1/webhook-event-types/", None),
    ("post", "/services/rest/v1/export/job/status", {"jobCode": "NOPE"}),
    ("post", "/api/v1/export-job-events/", {"jobId": "NOPE", "event": "started"}),
]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer"])
@pytest.mark.parametrize(("method", "path", "body"), BEARER_ENDPOINTS)
def test_the_bearer_scheme_is_matched_in_any_case(
    api_user: Any, scheme: str, method: str, path: str, body: Any
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {access_for(api_user)}")

    response = getattr(client, method)(path, body, format="json")

    assert response.status_code in (200, 404), response.content[:300]  # 404: no such job
    if response.status_code == 404:
        assert response.json()["code"] == "not_found"  # authenticated, then not found


def test_a_lower_case_scheme_reaches_a_job_of_the_callers_company(
    api_user: Any, company: Company
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {access_for(api_user)}")

    created = client.post(JOBS_URL, {"type": "export"}, format="json")

    assert created.status_code == 201, created.content[:300]
    assert Job.objects.get().company == company
    assert client.get(f"/engine/api/api-jobs/{created.json()['id']}").status_code == 200


@pytest.mark.parametrize("header", ["bearer not-a-jwt", "BEARER a.b.c", "bearer", "bearer a b"])
def test_a_bad_token_in_any_scheme_case_is_401_naming_bearer(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(JOBS_URL)

    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer ")


def test_unauthenticated_post_creates_nothing() -> None:
    response = APIClient().post(JOBS_URL, {"type": "export"}, format="json")

    assert_problem(response, 401)
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
        "Bearer",
        "Bearer two tokens",
        "Token abc",
    ],
)
def test_malformed_tokens_are_401(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(JOBS_URL)

    assert_problem(response, 401)


def test_token_signed_with_another_key_is_401(api_user: Any) -> None:
    payload = dict(access_for(api_user).payload)
    forged = jwt.encode(payload, "some-other-signing-key-0123456789abcdef", algorithm="HS256")

    response = client_with(forged).get(JOBS_URL)

    assert_problem(response, 401, "invalid_token")


def test_token_with_alg_none_is_401(api_user: Any) -> None:
    payload = dict(access_for(api_user).payload)
    forged = jwt.encode(payload, key=None, algorithm="none")  # type: ignore[arg-type]

    assert_problem(client_with(forged).get(JOBS_URL), 401)


def test_expired_token_is_401_token_expired(api_user: Any, company: Company) -> None:
    token = AccessToken.for_user(api_user)
    token["company_id"] = str(company.pk)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))

    response = client_with(str(token)).get(JOBS_URL)

    body = assert_problem(response, 401, "token_expired")
    assert "expired" in body["detail"] and "/api/v1/auth/token/refresh/" in body["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_token_with_a_bad_signature_is_invalid_not_expired(api_user: Any) -> None:
    token = AccessToken.for_user(api_user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))
    forged = jwt.encode(
        dict(token.payload), "some-other-signing-key-0123456789abcdef", algorithm="HS256"
    )

    body = assert_problem(client_with(forged).get(JOBS_URL), 401, "invalid_token")
    assert "expired" not in body["detail"]


def test_refresh_with_an_expired_refresh_token_is_401_token_expired(api_user: Any) -> None:
    refresh = RefreshToken.for_user(api_user)
    refresh.set_exp(from_time=timezone.now() - timedelta(days=30), lifetime=timedelta(days=1))

    response = APIClient().post(REFRESH_URL, {"refresh": str(refresh)}, format="json")

    body = assert_problem(response, 401, "token_expired")
    assert "refresh token has expired" in body["detail"]
    assert "access" not in body


def test_user_deactivated_after_getting_a_token_is_401(api_user: Any, api: APIClient) -> None:
    assert api.get(JOBS_URL).status_code == 200
    api_user.is_active = False
    api_user.save()

    response = api.get(JOBS_URL)

    assert_problem(response, 401, "authentication_failed")


def test_deleted_user_is_401(api_user: Any, api: APIClient) -> None:
    api_user.delete()

    assert_problem(api.get(JOBS_URL), 401)


def test_membership_removed_after_getting_a_token_is_401_token_revoked(
    api_user: Any, api: APIClient
) -> None:
    CompanyMember.objects.filter(user=api_user).delete()

    response = api.get(JOBS_URL)

    assert_problem(response, 401, "token_revoked")
    created = api.post(JOBS_URL, {"type": "export"}, format="json")
    assert_problem(created, 401, "token_revoked")
    assert Job.objects.count() == 0


def test_token_claiming_another_company_is_401(api_user: Any) -> None:
    token = access_for(api_user)
    token["company_id"] = str(CompanyFactory(name="Initech").pk)

    response = client_with(str(token)).get(JOBS_URL)

    assert_problem(response, 401, "invalid_token")


def test_user_moved_to_another_company_cannot_use_the_old_token(
    api_user: Any, api: APIClient
) -> None:
    CompanyMember.objects.filter(user=api_user).update(company=CompanyFactory(name="Umbrella"))

    assert_problem(api.get(JOBS_URL), 401, "invalid_token")


def test_a_company_sees_only_its_own_jobs(api: APIClient, other_api: APIClient) -> None:
    job_id = api.post(JOBS_URL, {"type": "export"}, format="json").json()["id"]

    assert other_api.get(JOBS_URL).json()["results"] == []
    assert_problem(other_api.get(f"{JOBS_URL}{job_id}/"), 404, "not_found")


# --- rate limits ------------------------------------------------------------------------------


def test_token_endpoint_is_rate_limited(settings: Any, api_user: Any) -> None:
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "3/minute"
    for _ in range(3):
        assert obtain(api_user.username).status_code == 200

    response = obtain(api_user.username)

    body = assert_problem(response, 429, "rate_limited")
    assert "access" not in body
    assert int(response["Retry-After"]) >= 1


def test_refresh_endpoint_is_rate_limited(settings: Any, api_user: Any) -> None:
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "3/minute"
    refresh = obtain(api_user.username).json()["refresh"]
    for _ in range(2):
        assert APIClient().post(REFRESH_URL, {"refresh": refresh}, format="json").status_code == 200

    response = APIClient().post(REFRESH_URL, {"refresh": refresh}, format="json")

    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


def test_api_is_rate_limited_per_client(
    settings: Any, api: APIClient, other_api: APIClient
) -> None:
    settings.JOBTRAIL_API_RATE_LIMIT = "2/minute"
    assert api.get(JOBS_URL).status_code == 200
    assert api.get(JOBS_URL).status_code == 200

    response = api.get(JOBS_URL)

    assert_problem(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert other_api.get(JOBS_URL).status_code == 200


@pytest.mark.redis
def test_the_api_answers_while_the_rate_limit_cache_is_unreachable(
    settings: Any, api: APIClient, api_user: Any, monkeypatch: Any, caplog: Any
) -> None:
    """The rate limits read the cache (Redis under CACHE_URL) on every request: with Redis
    down every API request answered 500 (and with a Redis that does not answer, after a wait
    without end). They let requests through for a few seconds after a failure, logged once."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    monkeypatch.setattr(auth, "cache_pause", Pause(auth.CACHE_RETRY_AFTER))
    settings.JOBTRAIL_API_RATE_LIMIT = "1/minute"  # would refuse the second request

    assert api.get(JOBS_URL).status_code == 200
    assert api.post(JOBS_URL, {"type": "export"}, format="json").status_code == 201
    assert obtain(api_user.username).status_code == 200
    warnings = [r for r in caplog.records if "rate limits not applied" in r.getMessage()]
    assert len(warnings) == 1

    auth.cache_pause.end()  # the pause is over: asked again
    assert api.get(JOBS_URL).status_code == 200
    assert len([r for r in caplog.records if "rate limits not applied" in r.getMessage()]) == 2


def test_throttled_post_creates_nothing(settings: Any, api: APIClient) -> None:
    settings.JOBTRAIL_API_RATE_LIMIT = "1/minute"
    assert api.post(JOBS_URL, {"type": "export"}, format="json").status_code == 201

    response = api.post(JOBS_URL, {"type": "export"}, format="json")

    assert_problem(response, 429, "rate_limited")
    assert Job.objects.count() == 1
