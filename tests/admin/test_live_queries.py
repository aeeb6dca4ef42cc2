"""The dashboard and the live fragments run a fixed number of queries, however many rows."""

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import FailureReason, Job, JobStatus
from ops.services import broker_check, heartbeat_record, operations_panel
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.relay import run_relay
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

REASONS = [
    FailureReason.VALIDATION_FAILURE,
    FailureReason.JOB_EXPIRED,
    FailureReason.PLEO_RATE_LIMIT,
]


def add_rows(n: int) -> Job:
    """``n`` companies' worth of rows: an endpoint each, jobs in every outcome, deliveries."""
    last = None
    for i in range(n):
        company = CompanyFactory()
        endpoint_create(company=company, url=f"http://127.0.0.1:9/hook-{i}", events=["*"])
        for status in (JobStatus.COMPLETED, JobStatus.PROCESSING):
            last = job_in_status(status, company=company)
        failed = job_in_status(JobStatus.PROCESSING, company=company)
        services.job_fail(job_id=failed.pk, failure_reason=REASONS[i % 3], message="x")
        old = JobFactory(company=company)
        Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=6))
    run_relay()
    for delivery in WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)[: n * 2]:
        deliver(delivery.pk)  # port 9: fails, retrying
    heartbeat_record(name="beat")
    heartbeat_record(name="worker")
    assert last is not None
    return last


def count(fetch: Callable[[], Any]) -> int:
    broker_check()  # warm the broker cache: its check is no query either way
    with CaptureQueriesContext(connection) as queries:
        response = fetch()
    assert getattr(response, "status_code", 200) == 200
    return len(queries)


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_dashboard_and_its_fragment_queries_constant_in_rows(staff: Client, window: str) -> None:
    add_rows(1)
    index = reverse("admin:index") + f"?window={window}"
    fragment = reverse("admin:dashboard_live") + f"?window={window}"
    few_index, few_fragment = count(lambda: staff.get(index)), count(lambda: staff.get(fragment))
    add_rows(6)
    assert count(lambda: staff.get(index)) == few_index
    assert count(lambda: staff.get(fragment)) == few_fragment


def spread_deliveries(window: str) -> None:
    """The deliveries moved over every hour or day of the window, each in turn."""
    from jobs.dashboard import WINDOWS

    now, buckets, step = timezone.now(), WINDOWS[window].buckets, WINDOWS[window].step
    for i, pk in enumerate(WebhookDelivery.objects.order_by("id").values_list("pk", flat=True)):
        WebhookDelivery.objects.filter(pk=pk).update(created_at=now - step * (i % buckets))


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_delivery_trend_queries_constant_in_endpoints_and_buckets(
    staff: Client, window: str
) -> None:
    """Each endpoint's chart comes from the one grouped query: two queries (counts, endpoints)
    for one endpoint in one bucket and for many endpoints over every bucket of the window."""
    from jobs.dashboard import trends_context

    add_rows(1)
    trend = trends_context(window)["deliveries"]
    assert len(trend["endpoints"]) == 1
    busy = [b for b in trend["endpoints"][0]["series"]["bars"] if b["delivered"] + b["pending"]]
    assert len(busy) == 1
    with CaptureQueriesContext(connection) as few:
        trends_context(window)
    index = reverse("admin:index") + f"?window={window}"
    few_index = count(lambda: staff.get(index))

    add_rows(7)
    spread_deliveries(window)
    trend = trends_context(window)["deliveries"]
    assert len(trend["endpoints"]) == 8
    buckets = {
        b["bucket"]
        for e in trend["endpoints"]
        for b in e["series"]["bars"]
        if b["delivered"] + b["pending"] + b["failed"]
    }
    assert len(buckets) == {"24h": 24, "7d": 7, "30d": 30}[window]
    with CaptureQueriesContext(connection) as many:
        trends_context(window)
    assert len(many) == len(few) == 3  # jobs trend, deliveries trend, the endpoints shown
    assert count(lambda: staff.get(index)) == few_index


def test_job_live_fragment_queries_constant_in_rows(staff: Client) -> None:
    job = add_rows(1)
    url = reverse("admin:jobs_job_live", args=[job.pk])
    few = count(lambda: staff.get(url))
    for n in range(5):  # more events, push results and deliveries on the same job
        services.job_record_progress(job_id=job.pk, effected_records=n, message=f"{n}")
        services.push_result_record(
            job_id=job.pk,
            data=services.PushResultData(push_communication_id=f"p{n}", status="success"),
        )
    run_relay()
    assert WebhookDelivery.objects.filter(object_id=str(job.pk)).count() > 3
    assert count(lambda: staff.get(url)) == few


def test_operations_panel_queries_constant_in_rows() -> None:
    add_rows(1)
    few = count(operations_panel)
    add_rows(5)
    assert count(operations_panel) == few


def test_job_fragment_needs_staff_and_an_existing_job(client: Client, staff: Client) -> None:
    job = JobFactory(company=CompanyFactory())
    url = reverse("admin:jobs_job_live", args=[job.pk])
    assert client.get(url).status_code == 302  # to the login page
    assert client.get(reverse("admin:dashboard_live")).status_code == 302
    response = staff.get(url)
    assert response.status_code == 200
    assert f'hx-get="{url}"' in response.content.decode()  # pending: it keeps polling
    assert 'hx-swap-oob="true"' in response.content.decode()  # the status line, out of band
    missing = reverse("admin:jobs_job_live", args=["00000000-0000-0000-0000-000000000000"])
    assert staff.get(missing).status_code == 404


def test_finished_job_fragment_does_not_poll(staff: Client) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=CompanyFactory())
    services.job_fail(job_id=job.pk, failure_reason=FailureReason.JOB_EXPIRED, message="x")
    run_relay()
    content = staff.get(reverse("admin:jobs_job_live", args=[job.pk])).content.decode()
    assert "hx-get" not in content
    assert "Not refreshing: nothing is moving" in content


def test_broker_check_is_cached_a_few_seconds() -> None:
    start = time.monotonic() + 1000  # past any answer cached by the tests before
    first = broker_check(now=start)
    again = broker_check(now=start + 2)
    later = broker_check(now=start + 10)
    assert first["cached"] is False and again["cached"] is True and later["cached"] is False
    assert first["ok"] is True  # the test broker (filesystem or Redis) is reachable


def test_broker_check_names_an_unreachable_broker() -> None:
    closed = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    answer = broker_check(url=closed, now=time.monotonic() + 2000)
    assert answer["ok"] is False and answer["cached"] is False
    assert "Connection refused" in answer["error"]
    assert broker_check()["ok"] is True  # the configured broker's answer is its own


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


@pytest.mark.postgres
@pytest.mark.parametrize("window", ["24h", "30d"])
def test_trend_aggregates_read_their_window_through_an_index(window: str) -> None:
    """The jobs trend and the deliveries trend through an index on created_at
    (the planner told to avoid sequential scans, as the tables are small here)."""
    import json

    from jobs.dashboard import trends_context

    add_rows(2)
    with CaptureQueriesContext(connection) as queries:
        trends_context(window)
    trend_sql = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"]]
    assert len(trend_sql) == 2
    used: dict[str, set[tuple[str, str]]] = {}
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in trend_sql:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            raw = cursor.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            table = "jobs" if 'FROM "jobs_job"' in sql else "deliveries"
            used[table] = {
                (node["Node Type"], node.get("Index Name", ""))
                for node in _plan_nodes(plan)
                if "Scan" in node["Node Type"]
            }
        cursor.execute("RESET enable_seqscan")
    # any index leading with created_at serves a window (job_created, webhook_delivery_trend
    # or the console search's webhook_delivery_created: the planner picks by size)
    with connection.cursor() as cursor:
        leading = {
            name: info["columns"][0]
            for db_table in ("jobs_job", "webhooks_webhookdelivery")
            for name, info in connection.introspection.get_constraints(cursor, db_table).items()
            if info["index"] and info["columns"]
        }
    for table in ("jobs", "deliveries"):
        names = {name for _, name in used[table] if name}
        assert names, used[table]
        assert {leading.get(name) for name in names} == {"created_at"}, used[table]
        assert "Seq Scan" not in {node for node, _ in used[table]}
