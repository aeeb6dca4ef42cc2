"""The per-process cache of verified access tokens (``jobs.auth.VerifiedTokens``): a token is
decoded once per process, and the cache never accepts what full verification would refuse."""

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken

import jobs.auth
from jobs.auth import VERIFIED_TOKENS, CompanyTokenObtainPairSerializer, VerifiedTokens
from tests.api.test_errors import assert_problem

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/v1/jobs/"


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    VERIFIED_TOKENS.clear()
    yield
    VERIFIED_TOKENS.clear()


def access_for(user: Any) -> AccessToken:
    refresh = CompanyTokenObtainPairSerializer.get_token(user)
    return refresh.access_token  # type: ignore[attr-defined,no-any-return]


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_verified_token_is_not_decoded_again(api_user: Any, monkeypatch: Any) -> None:
    token = str(access_for(api_user))
    assert client_with(token).get(JOBS_URL).status_code == 200
    assert len(VERIFIED_TOKENS) == 1

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(TokenBackend, "decode", no_decoding)
    response = client_with(token).get(JOBS_URL)
    assert response.status_code == 200
    assert response.wsgi_request.auth["user_id"] == str(api_user.pk)  # type: ignore[attr-defined]


def test_a_cached_token_past_its_exp_is_refused_as_expired(api_user: Any, company: Any) -> None:
    token = AccessToken.for_user(api_user)
    token["company_id"] = str(company.pk)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))
    raw = str(token)
    # as if it had been verified while it was still valid
    VERIFIED_TOKENS.put(raw.encode(), dict(token.payload))

    response = client_with(raw).get(JOBS_URL)

    body = assert_problem(response, 401, "token_expired")
    assert "/api/v1/auth/token/refresh/" in body["detail"]
    assert len(VERIFIED_TOKENS) == 0


def test_a_hit_is_honoured_only_before_exp(monkeypatch: Any) -> None:
    cache = VerifiedTokens(size=4)
    now = time.time()
    exp = int(now) + 100
    cache.put(b"t", {"exp": exp, "user_id": "1"})
    monkeypatch.setattr(jobs.auth.time, "time", lambda: exp - 0.5)
    assert cache.get(b"t") == {"exp": exp, "user_id": "1"}
    monkeypatch.setattr(jobs.auth.time, "time", lambda: float(exp))  # PyJWT: exp <= now
    assert cache.get(b"t") is None
    assert len(cache) == 0


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedTokens(size=3)
    exp = int(time.time()) + 600
    for name in (b"a", b"b", b"c"):
        cache.put(name, {"exp": exp})
    assert cache.get(b"a") is not None  # a is now the most recently used
    cache.put(b"d", {"exp": exp})
    cache.put(b"e", {"exp": exp})
    assert len(cache) == 3
    assert cache.get(b"b") is None and cache.get(b"c") is None
    assert all(cache.get(name) is not None for name in (b"a", b"d", b"e"))


def test_the_default_cache_is_bounded(api_user: Any) -> None:
    assert VERIFIED_TOKENS.size == 1024
    for _ in range(3):
        assert client_with(str(access_for(api_user))).get(JOBS_URL).status_code == 200
    assert len(VERIFIED_TOKENS) == 3


def test_a_tampered_copy_of_a_cached_token_is_never_accepted(api_user: Any) -> None:
    token = str(access_for(api_user))
    assert client_with(token).get(JOBS_URL).status_code == 200
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    other_payload = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for forged in (
        f"{header}.{payload}.{flipped}",
        f"{header}.{other_payload}.{signature}",
        token + "x",
        " " + token.upper(),
    ):
        assert_problem(client_with(forged).get(JOBS_URL), 401)
    assert len(VERIFIED_TOKENS) == 1


def test_revocation_refuses_a_cached_token(api_user: Any) -> None:
    token = str(access_for(api_user))
    assert client_with(token).get(JOBS_URL).status_code == 200
    assert len(VERIFIED_TOKENS) == 1

    user = get_user_model().objects.get(pk=api_user.pk)
    user.set_password("a-brand-new-pass-456")
    user.save()

    assert_problem(client_with(token).get(JOBS_URL), 401, "token_revoked")


def test_deactivation_refuses_a_cached_token(api_user: Any) -> None:
    token = str(access_for(api_user))
    assert client_with(token).get(JOBS_URL).status_code == 200

    get_user_model().objects.filter(pk=api_user.pk).update(is_active=False)

    assert_problem(client_with(token).get(JOBS_URL), 401)


def test_a_change_of_the_jwt_settings_empties_the_cache(api_user: Any, settings: Any) -> None:
    token = str(access_for(api_user))
    assert client_with(token).get(JOBS_URL).status_code == 200
    assert len(VERIFIED_TOKENS) == 1

    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "LEEWAY": 0}

    assert len(VERIFIED_TOKENS) == 0
