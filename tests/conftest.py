"""Shared fixtures: API clients with bearer tokens, each in its own company."""

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from config import outbox
from config.celery_app import app as celery_app
from config.outage import Pause
from jobs.auth import CompanyTokenObtainPairSerializer
from jobs.models import Company
from tests.factories import ApiClientFactory, CompanyFactory
from tests.receiver import Receiver, running_receiver
from tests.relay import run_relay
from webhooks import lanes


@pytest.fixture(autouse=True)
def _fresh_throttle_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_lanes() -> None:
    """Which companies fan out wide is read again: the last test's companies are gone."""
    lanes.forget()


def bearer_client(user: Any) -> APIClient:
    token: RefreshToken = CompanyTokenObtainPairSerializer.get_token(user)  # type: ignore[assignment]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.access_token}")
    return client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real local HTTP server that records the webhooks it receives."""
    with running_receiver() as r:
        yield r


@pytest.fixture
def company(db: None) -> Company:
    return CompanyFactory(name="Acme")


@pytest.fixture
def api_user(company: Company) -> Any:
    return ApiClientFactory(company=company)


@pytest.fixture
def api(api_user: Any) -> APIClient:
    return bearer_client(api_user)


@pytest.fixture
def other_api(db: None) -> APIClient:
    """An API client of another company."""
    return bearer_client(ApiClientFactory(company=CompanyFactory(name="Globex")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each test's call report on the item, so fixtures can dump logs on failure."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


@pytest.fixture
def relay() -> Callable[[], int]:
    """Run the job event relay now, in this process (what the worker does after a change)."""
    return run_relay


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Celery app's broker is a loopback port nothing listens on (a real refused
    connection, whatever broker the run uses), with a fresh publish pause; afterwards the app's
    own broker and connection pools are back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    for name in ("broker_url", "broker_write_url", "broker_read_url"):
        monkeypatch.setitem(celery_app.conf, name, url)
    monkeypatch.setattr(celery_app, "_pool", None)  # the pools are made from the URL once
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    monkeypatch.setattr(outbox, "broker_pause", Pause(outbox.BROKER_BACKOFF))
    try:
        yield url
    finally:
        pool = celery_app._pool
        if pool is not None:
            pool.force_close_all()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task names ``config.outbox.publish`` is asked to send (recorded, not sent)."""
    names: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): names.append(name) or True)
    return names


@pytest.fixture
def one_batch_per_run(
    settings: Any, monkeypatch: pytest.MonkeyPatch, published: list[str]
) -> list[str]:
    """Runs with a time budget (retention, endpoint deletion) spend it on their first batch,
    of 2 rows; what they queue is recorded."""
    from config import sql

    monkeypatch.setattr(sql, "DELETE_BATCH", 2)
    settings.JOBTRAIL_PURGE_BUDGET = 0
    return published
