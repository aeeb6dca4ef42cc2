"""GET /metrics: who may scrape it, and each metric family moving after the action it counts.

The counters add up over the test run (every process writes to the same folder), so each test
compares a scrape taken before the action with one taken after it.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config import gunicorn as gunicorn_config
from jobs.models import EventSource, Job, JobEvent
from jobs.services import jobs_cancel, jobs_expire_stale
from reports.models import Report, ReportStatus
from tests.factories import CompanyFactory, JobFactory, UserFactory
from tests.receiver import Receiver, Reply
from tests.relay import run_relay
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.sending import deliver

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _tokens(settings: Any) -> None:
    settings.JOBTRAIL_METRICS_TOKEN = TOKEN
    settings.JOBTRAIL_OPS_TOKEN = "ops-token-for-tests"


def scrape() -> Samples:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def committed(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> Callable[[Callable[[], Any]], Any]:
    """Run ``action`` and then what its transactions run on commit (the metrics observations:
    the test's own transaction never commits)."""

    def run(action: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


# --- who may scrape ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "headers", "allowed"),
    [
        ("anonymous", {}, False),
        ("customer", {}, False),
        ("anonymous", {"Authorization": "Bearer wrong-token"}, False),
        ("anonymous", {"Authorization": "Basic " + TOKEN}, False),
        ("staff", {}, True),
        ("anonymous", {"Authorization": f"Bearer {TOKEN}"}, True),
        ("anonymous", {"Authorization": "Bearer ops-token-for-tests"}, True),
    ],
)
def test_metrics_are_for_staff_and_the_tokens(who: str, headers: dict, allowed: bool) -> None:
    client = Client()
    if who != "anonymous":
        client.force_login(UserFactory(is_staff=who == "staff"))
    response = client.get("/metrics", headers=headers)
    if allowed:
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        assert response["Cache-Control"] == "no-store"
        assert b"jobtrail_webhook_deliveries_due" in response.content
    else:
        assert response.status_code == 401
        assert response["Content-Type"] == "application/problem+json"
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        body = response.json()
        assert (body["status"], body["code"]) == (401, "not_authenticated")
        assert b"jobtrail_" not in response.content


def test_without_a_metrics_token_only_staff_and_the_operations_token_scrape(
    settings: Any,
) -> None:
    settings.JOBTRAIL_METRICS_TOKEN = ""
    assert Client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert Client().get("/metrics").status_code == 401
    ops = Client().get("/metrics", headers={"Authorization": "Bearer ops-token-for-tests"})
    assert ops.status_code == 200


def test_metrics_answer_get_only() -> None:
    response = Client().post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response["Content-Type"] == "application/problem+json"


# --- job changes ---------------------------------------------------------------------------


CHANGES = "jobtrail_job_changes_total"


def test_a_created_job_counts_once_when_its_event_is_relayed(api: Any, committed: Any) -> None:
    created = {"status": "created", "failure_reason": ""}
    before = value(scrape(), CHANGES, **created)
    response = api.post("/api/v1/jobs/", {"type": "export"}, format="json")
    assert response.status_code == 201
    assert value(scrape(), CHANGES, **created) == before  # counted by the relay, on commit

    committed(run_relay)
    assert value(scrape(), CHANGES, **created) == before + 1
    committed(run_relay)  # nothing left to relay: counted once
    assert value(scrape(), CHANGES, **created) == before + 1


def test_a_relay_batch_rolled_back_counts_nothing(api: Any, committed: Any) -> None:
    created = {"status": "created", "failure_reason": ""}
    api.post("/api/v1/jobs/", {"type": "export"}, format="json")
    before = value(scrape(), CHANGES, **created)
    with pytest.raises(RuntimeError), pytest.MonkeyPatch.context() as patch:
        patch.setattr("jobs.relay._mark_relayed", _crash)
        committed(run_relay)
    assert value(scrape(), CHANGES, **created) == before
    committed(run_relay)
    assert value(scrape(), CHANGES, **created) == before + 1


def _crash(events: Any) -> None:
    raise RuntimeError("the relay crashed before its commit")


def test_a_failed_event_counts_under_its_failure_reason(api: Any, committed: Any) -> None:
    job = api.post("/api/v1/jobs/", {"type": "export"}, format="json").json()
    committed(run_relay)
    timeout = {"status": "failed", "failure_reason": "service_timeout"}
    expired = {"status": "failed", "failure_reason": "job_expired"}
    before = scrape()
    failed = api.post(
        f"/api/v1/jobs/{job['id']}/events/",
        {"status": "failed", "failure_reason": "service_timeout", "message": "ERP timed out"},
        format="json",
    )
    assert failed.status_code == 201, failed.content
    committed(run_relay)
    after = scrape()
    assert value(after, CHANGES, **timeout) == value(before, CHANGES, **timeout) + 1
    assert value(after, CHANGES, **expired) == value(before, CHANGES, **expired)


def test_jobs_expired_and_canceled_in_bulk_count_one_change_each(committed: Any) -> None:
    """The set-based paths (expiry's one statement, bulk cancel) are counted by the relay too."""
    expired = {"status": "failed", "failure_reason": "job_expired"}
    canceled = {"status": "failed", "failure_reason": "canceled_by_user"}
    stale = [JobFactory(), JobFactory()]
    doomed = [JobFactory(), JobFactory(), JobFactory()]
    committed(run_relay)
    before = scrape()
    Job.objects.filter(pk__in=[job.pk for job in stale]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert jobs_expire_stale() == 2
    canceled_ids, finished = jobs_cancel(
        job_ids=[job.pk for job in doomed], actor=None, source=EventSource.ADMIN
    )
    assert (len(canceled_ids), finished) == (3, 0)
    committed(run_relay)
    after = scrape()
    assert value(after, CHANGES, **expired) == value(before, CHANGES, **expired) + 2
    assert value(after, CHANGES, **canceled) == value(before, CHANGES, **canceled) + 3


# --- API latency -------------------------------------------------------------------------------

DURATION_COUNT = "jobtrail_http_request_duration_seconds_count"


def test_request_duration_is_observed_under_the_route_template(api: Any, company: Any) -> None:
    job = JobFactory(company=company)
    before = scrape()
    assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    assert api.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert api.post("/api/v1/jobs/", {"type": ""}, format="json").status_code == 400
    after = scrape()
    detail = {"route": "/api/v1/jobs/<uuid_ci:job_id>/", "method": "GET"}
    assert value(after, DURATION_COUNT, **detail, status="2xx") == (
        value(before, DURATION_COUNT, **detail, status="2xx") + 2
    )
    assert value(after, DURATION_COUNT, **detail, status="4xx") == (
        value(before, DURATION_COUNT, **detail, status="4xx") + 1
    )
    create = {"route": "/api/v1/jobs/", "method": "POST", "status": "4xx"}
    assert value(after, DURATION_COUNT, **create) == value(before, DURATION_COUNT, **create) + 1
    assert not any(str(job.pk) in dict(labels).get("route", "") for _, labels in after)


def test_a_path_no_pattern_matches_counts_as_unmatched() -> None:
    labels = {"route": "<unmatched>", "method": "GET", "status": "4xx"}
    before = value(scrape(), DURATION_COUNT, **labels)
    assert Client().get("/no-such-page/at-all").status_code == 404
    assert value(scrape(), DURATION_COUNT, **labels) == before + 1


# --- webhook deliveries ------------------------------------------------------------------------

DELIVERIES = "jobtrail_webhook_deliveries_total"
ATTEMPT_COUNT = "jobtrail_webhook_attempt_duration_seconds_count"
FIRST_COUNT = "jobtrail_webhook_first_attempt_delay_seconds_count"
FIRST_SUM = "jobtrail_webhook_first_attempt_delay_seconds_sum"


def test_delivery_outcomes_and_latencies(receiver: Receiver, committed: Any, settings: Any) -> None:
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [1]
    company = CompanyFactory()
    endpoint_for(company, receiver.url + "/hook", ["jobs.create"])
    JobFactory(company=company)
    JobFactory(company=company)
    first, second = deliveries()
    before = scrape()

    committed(lambda: deliver(first.pk))  # 200
    after = scrape()
    assert value(after, DELIVERIES, outcome="delivered") == (
        value(before, DELIVERIES, outcome="delivered") + 1
    )
    assert value(after, ATTEMPT_COUNT) == value(before, ATTEMPT_COUNT) + 1
    assert value(after, FIRST_COUNT) == value(before, FIRST_COUNT) + 1
    event_time = JobEvent.objects.get(pk=first.job_event_id).created_at
    attempted = first.attempt_log.get().started_at
    delay = value(after, FIRST_SUM) - value(before, FIRST_SUM)
    assert delay == pytest.approx((attempted - event_time).total_seconds(), abs=1e-3)

    receiver.default = Reply(503)
    committed(lambda: deliver(second.pk))  # retried on its schedule
    retried = scrape()
    assert value(retried, DELIVERIES, outcome="retrying") == (
        value(after, DELIVERIES, outcome="retrying") + 1
    )
    assert value(retried, FIRST_COUNT) == value(after, FIRST_COUNT) + 1

    WebhookDelivery.objects.filter(pk=second.pk).update(next_attempt_at=timezone.now())
    committed(lambda: deliver(second.pk))  # the schedule (one retry) is used up
    failed = scrape()
    assert value(failed, DELIVERIES, outcome="failed") == (
        value(retried, DELIVERIES, outcome="failed") + 1
    )
    assert value(failed, ATTEMPT_COUNT) == value(before, ATTEMPT_COUNT) + 3
    assert value(failed, FIRST_COUNT) == value(retried, FIRST_COUNT)  # a retry is no first attempt
    assert WebhookDelivery.objects.get(pk=second.pk).status == DeliveryStatus.FAILED


def test_a_delivery_to_a_disabled_endpoint_counts_as_abandoned(
    receiver: Receiver, committed: Any
) -> None:
    company = CompanyFactory()
    endpoint = endpoint_for(company, receiver.url + "/hook", ["jobs.create"])
    JobFactory(company=company)
    [delivery] = deliveries()
    type(endpoint).objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_reason="The receiver answered 410 Gone."
    )
    before = scrape()
    committed(lambda: deliver(delivery.pk))
    after = scrape()
    assert value(after, DELIVERIES, outcome="abandoned") == (
        value(before, DELIVERIES, outcome="abandoned") + 1
    )
    assert value(after, ATTEMPT_COUNT) == value(before, ATTEMPT_COUNT)
    assert receiver.requests == []


# --- backlog gauges ----------------------------------------------------------------------------


def test_backlog_gauges_reflect_the_database(receiver: Receiver) -> None:
    empty = scrape()
    assert value(empty, "jobtrail_backlog_up") == 1
    assert value(empty, "jobtrail_webhook_deliveries_due") == 0
    assert value(empty, "jobtrail_webhook_oldest_due_delivery_age_seconds") == 0
    assert value(empty, "jobtrail_reports_pending") == 0
    assert value(empty, "jobtrail_job_events_unrelayed") == 0

    company = CompanyFactory()
    endpoint_for(company, receiver.url + "/hook", ["jobs.create"])
    jobs = [JobFactory(company=company) for _ in range(3)]
    assert value(scrape(), "jobtrail_job_events_unrelayed") == 3
    due = deliveries()
    assert len(due) == 3
    WebhookDelivery.objects.filter(pk=due[0].pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=120)
    )
    WebhookDelivery.objects.filter(pk=due[1].pk).update(  # retrying later: not due
        next_attempt_at=timezone.now() + timedelta(seconds=600)
    )
    Report.objects.create(job=jobs[0], status=ReportStatus.PENDING)
    Report.objects.create(job=jobs[1], status=ReportStatus.READY)

    figures = scrape()
    assert value(figures, "jobtrail_job_events_unrelayed") == 0
    assert value(figures, "jobtrail_webhook_deliveries_due") == 2
    # due 120 s ago (the other due one became due when it was written, the third is not due)
    assert 120 <= value(figures, "jobtrail_webhook_oldest_due_delivery_age_seconds") < 600
    assert value(figures, "jobtrail_reports_pending") == 1


def test_a_database_down_leaves_the_gauges_out_but_serves_the_rest() -> None:
    def unreachable(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise OperationalError("connection to 10.0.0.7 failed")

    with connection.execute_wrapper(unreachable):
        response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "jobtrail_backlog_up 0.0" in text
    assert "jobtrail_webhook_deliveries_due" not in text
    assert "jobtrail_http_request_duration_seconds_bucket" in text  # the processes' metrics
    assert "10.0.0.7" not in text


# --- the shared folder -------------------------------------------------------------------------


def test_make_run_empties_the_metrics_folder_before_the_processes_start(tmp_path: Any) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_12345.db").write_bytes(b"old run")
    (folder / "stray").mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run(
        [sys.executable, "-c", "from config import metrics_dir; metrics_dir.reset()"],
        check=True,
        env=env,
        cwd=django_settings.BASE_DIR,
    )
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_dead_gunicorn_worker_loses_its_live_gauges_but_keeps_its_counts() -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    live = folder / "gauge_livesum_999999.db"
    counts = folder / "counter_999999.db"
    live.write_bytes(b"")
    counts.write_bytes(b"")
    try:
        gunicorn_config.child_exit(None, SimpleNamespace(pid=999999))
        assert not live.exists()
        assert counts.exists()
    finally:
        live.unlink(missing_ok=True)
        counts.unlink(missing_ok=True)
