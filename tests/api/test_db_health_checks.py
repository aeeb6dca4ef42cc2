"""The persistent connection's health check (config/postgresql/base.py), on PostgreSQL.

A connection released in good health less than ``JOBTRAIL_DB_HEALTH_CHECK_AFTER`` seconds ago
is reused without a ``SELECT 1``; a connection that broke meanwhile fails one request (a 503
problem) and is replaced for the next.
"""

import time
from typing import Any

import pytest
from django.db import close_old_connections, connection, connections

from jobs.models import JobStatus
from tests.conftest import bearer_client
from tests.factories import ApiClientFactory, CompanyFactory, job_in_status
from tests.pg import backend_terminator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every health check the connection runs (and its answer)."""
    seen: list[bool] = []
    wrapper = type(connections["default"])
    real = wrapper.is_usable

    def is_usable(self: Any) -> bool:
        seen.append(real(self))
        return seen[-1]

    monkeypatch.setattr(wrapper, "is_usable", is_usable)
    return seen


@pytest.fixture
def poll(settings: Any) -> Any:
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 60  # persistent, as deployed
    connection.settings_dict["CONN_MAX_AGE"] = 60
    connection.close()  # the next connection is persistent and health-checked
    company = CompanyFactory(name="Health Co")
    job = job_in_status(JobStatus.PROCESSING, company=company)
    api = bearer_client(ApiClientFactory(company=company))

    def request() -> Any:
        # Django's test client leaves out what the server does around each request
        # (request_started / request_finished call close_old_connections): do it here.
        close_old_connections()
        try:
            return api.get(f"/api/v1/jobs/{job.pk}/")
        finally:
            close_old_connections()

    return request


def test_a_connection_used_a_moment_ago_is_not_checked_again(
    poll: Any, checks: list[bool], settings: Any
) -> None:
    settings.JOBTRAIL_DB_HEALTH_CHECK_AFTER = 60
    assert poll().status_code == 200
    checks.clear()

    pid = connection.connection.info.backend_pid
    for _ in range(5):
        assert poll().status_code == 200

    assert checks == []
    assert connection.connection.info.backend_pid == pid  # one persistent connection


def test_an_idle_connection_is_checked_before_it_is_used(
    poll: Any, checks: list[bool], settings: Any
) -> None:
    settings.JOBTRAIL_DB_HEALTH_CHECK_AFTER = 0  # every connection counts as idle
    assert poll().status_code == 200
    checks.clear()

    for _ in range(3):
        assert poll().status_code == 200

    assert checks == [True, True, True]


def test_a_connection_that_broke_unseen_fails_one_request_then_is_replaced(
    poll: Any, settings: Any
) -> None:
    settings.JOBTRAIL_DB_HEALTH_CHECK_AFTER = 60
    assert poll().status_code == 200
    pid = connection.connection.info.backend_pid
    backend_terminator()(pid)

    broken = poll()
    recovered = poll()

    assert broken.status_code == 503, broken.content
    assert broken["Content-Type"].startswith("application/problem+json")
    assert "Retry-After" in broken
    assert recovered.status_code == 200
    assert connection.connection.info.backend_pid != pid


def test_a_connection_idle_past_the_delay_is_checked_though_a_request_just_started(
    poll: Any, settings: Any
) -> None:
    """The start of a request also releases the connection (close_old_connections runs on
    request_started): that must not count as "healthy a moment ago", or a connection idle for
    minutes and broken by a database restart skips its check and fails its request."""
    settings.JOBTRAIL_DB_HEALTH_CHECK_AFTER = 0.3
    assert poll().status_code == 200
    pid = connection.connection.info.backend_pid
    time.sleep(0.5)  # idle past the delay
    backend_terminator()(pid)

    assert poll().status_code == 200  # checked, found broken, replaced before the query
    assert connection.connection.info.backend_pid != pid
