"""Fairness between companies (``fair_at``) and the fan-out's set-based insert (one INSERT ...
SELECT per batch on PostgreSQL).

A company's burst of deliveries stands in line ``JOBTRAIL_WEBHOOK_FAIR_SPACING`` apart; claims
take due deliveries in ``fair_at`` order, so another company's delivery made during the burst
goes ahead of most of it.
"""

import threading
import time
from datetime import datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import outbox
from jobs.models import JobEvent
from tests.factories import CompanyFactory, JobFactory
from tests.relay import run_relay
from tests.webhooks.helpers import endpoint_for
from webhooks import lanes, sending, services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _burst(company: Any, *, endpoints: int, jobs: int) -> None:
    for n in range(endpoints):
        endpoint_for(company, f"http://127.0.0.1:9/a{n}", ["jobs.create"])
    for _ in range(jobs):
        JobFactory(company=company)
    run_relay()


def _relay_at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Run the relay as if its fan-out happened at ``moment`` (no clock in the assertions)."""
    with monkeypatch.context() as patched:
        patched.setattr(services, "timezone", SimpleNamespace(now=lambda: moment))
        run_relay()


@pytest.mark.parametrize("spacing", [0.01, 0.0])
def test_another_companys_delivery_goes_ahead_of_a_burst(
    settings: Any, monkeypatch: pytest.MonkeyPatch, spacing: float
) -> None:
    """A's burst of 500 deliveries is fanned out; one second into it (as the burst's line
    counts: 5 s at 10 ms) B's one delivery is: B's is claimed in a first batch of 200,
    after the 101 of A's that stand before it in line. Without the spacing (0) it stands
    behind all 500 of A's."""
    settings.JOBTRAIL_WEBHOOK_FAIR_SPACING = spacing
    a, b = CompanyFactory(name="A"), CompanyFactory(name="B")
    for n in range(5):
        endpoint_for(a, f"http://127.0.0.1:9/a{n}", ["jobs.create"])
    endpoint_for(b, "http://127.0.0.1:9/b", ["jobs.create"])
    for _ in range(100):
        JobFactory(company=a)
    burst_at = timezone.now() - timedelta(minutes=1)
    _relay_at(monkeypatch, burst_at)
    assert WebhookDelivery.objects.filter(company=a).count() == 500
    JobFactory(company=b)
    _relay_at(monkeypatch, burst_at + timedelta(seconds=1.005))
    [b_delivery] = WebhookDelivery.objects.filter(company=b)

    first_batch = services.deliveries_claim_due(limit=200)

    claimed = [claim.delivery.pk for claim in first_batch]
    assert len(claimed) == 200
    if spacing:
        assert claimed.index(b_delivery.pk) == 101
    else:
        assert b_delivery.pk not in claimed
        assert services.deliveries_claim_due(limit=1000)[-1].delivery.pk == b_delivery.pk


def test_a_companys_next_burst_lines_up_after_its_untried_deliveries(settings: Any) -> None:
    settings.JOBTRAIL_WEBHOOK_FAIR_SPACING = 0.5  # far apart: no clock could blur the order
    company = CompanyFactory()
    _burst(company, endpoints=3, jobs=1)
    first = sorted(WebhookDelivery.objects.values_list("fair_at", flat=True))
    assert [later - earlier for earlier, later in pairwise(first)] == [timedelta(seconds=0.5)] * 2

    JobFactory(company=company)  # a second burst while the first still waits
    run_relay()
    second = sorted(WebhookDelivery.objects.values_list("fair_at", flat=True))[3:]
    assert second[0] == first[-1] + timedelta(seconds=0.5)

    # once nothing of the company waits untried, a new delivery stands in line from now
    WebhookDelivery.objects.update(status="delivered")
    before = timezone.now()
    JobFactory(company=company)
    run_relay()
    newest = WebhookDelivery.objects.filter(status="pending").order_by("fair_at").first()
    assert newest is not None and before <= newest.fair_at <= timezone.now()


def test_a_retry_stands_in_line_from_its_retry_time() -> None:
    company = CompanyFactory()
    _burst(company, endpoints=1, jobs=1)
    [claim] = services.deliveries_claim_due(limit=10)
    services.delivery_record_attempt(
        claim=claim,
        result=services.AttemptResult(started_at=timezone.now(), duration_ms=1, status_code=500),
    )
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert delivery.fair_at == delivery.next_attempt_at > timezone.now()


@pytest.mark.postgres
def test_claims_are_taken_in_line_order_through_the_partial_index() -> None:
    company = CompanyFactory()
    _burst(company, endpoints=1, jobs=3)
    with CaptureQueriesContext(connection) as queries:
        services.deliveries_claim_due(limit=2)
    [claim_sql] = [q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"]]
    assert "fair_at" in claim_sql
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + claim_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "webhook_delivery_fair" in plan, plan
    assert "Sort" not in plan, plan


def _delivery_inserts(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "webhooks_')
    ]


@pytest.mark.postgres
def test_a_batch_of_several_companies_events_is_one_insert_select_and_idempotent(
    settings: Any,
) -> None:
    """Three jobs each of two companies (two endpoints each, one of them also subscribed to
    nothing else): one INSERT for the relay's batch, each row with its own message's ids and
    payload, each company's line spaced apart on its own."""
    settings.JOBTRAIL_WEBHOOK_FAIR_SPACING = 0.01
    companies = [CompanyFactory(name="A"), CompanyFactory(name="B")]
    jobs: dict[Any, list[Any]] = {}
    for company in companies:
        endpoint_for(company, "http://127.0.0.1:9/first", ["jobs.create"])
        endpoint_for(company, "http://127.0.0.1:9/second", ["jobs.create", "jobs.failed"])
        endpoint_for(company, "http://127.0.0.1:9/quiet", ["jobs.failed"])  # not subscribed
        jobs[company.pk] = [JobFactory(company=company) for _ in range(3)]

    with CaptureQueriesContext(connection) as queries:
        run_relay()

    inserts = _delivery_inserts(queries)
    assert len(inserts) == 1 and "unnest" in inserts[0]
    rows = list(WebhookDelivery.objects.select_related("endpoint", "job_event").order_by("fair_at"))
    assert len(rows) == 12
    for company in companies:
        mine = [row for row in rows if row.company_id == company.pk]
        assert {row.endpoint.company_id for row in mine} == {company.pk}
        assert {row.endpoint.url.rsplit("/", 1)[1] for row in mine} == {"first", "second"}
        assert {row.object_id for row in mine} == {str(job.pk) for job in jobs[company.pk]}
        for row in mine:  # each row carries its own message
            assert row.payload["data"]["id"] == row.object_id
            assert row.payload["event"] == {
                "dt": row.job_event.created_at.isoformat(),
                "events_id": "jobs.create",
                "object_id": row.object_id,
            }
            assert str(row.job_event.job_id) == row.object_id
            assert (row.status, row.attempts, row.handoff) == ("pending", 0, False)
        assert len({row.event_id for row in mine}) == 3  # one webhook-id per message
        steps = {later.fair_at - earlier.fair_at for earlier, later in pairwise(mine)}
        assert steps == {timedelta(seconds=0.01)}  # six in line, each company on its own

    JobEvent.objects.update(relayed_at=None)  # as if the relay's mark had been lost
    run_relay()
    assert sorted(WebhookDelivery.objects.values_list("pk", flat=True)) == sorted(
        row.pk for row in rows
    )


@pytest.mark.postgres
def test_a_wide_fan_out_is_one_insert_select_and_idempotent(settings: Any) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = 100
    settings.JOBTRAIL_WEBHOOK_FAIR_SPACING = 0.01
    company = CompanyFactory()
    integration = services.endpoint_create(
        company=company, url="http://127.0.0.1:9/integration", events=[], role="integration"
    )
    subscribers = [
        endpoint_for(company, f"http://127.0.0.1:9/s{n}", ["jobs.create"])
        for n in range(lanes.WIDE_FAN_OUT - 1)
    ]
    endpoint_for(company, "http://127.0.0.1:9/other", ["jobs.completed"])  # not subscribed
    job = JobFactory(company=company)

    with CaptureQueriesContext(connection) as queries:
        run_relay()

    inserts = _delivery_inserts(queries)
    assert len(inserts) == 1 and "unnest" in inserts[0]
    rows = list(WebhookDelivery.objects.order_by("fair_at"))
    expected = {integration.pk, *(e.pk for e in subscribers)}
    assert len(rows) == len(expected) == lanes.WIDE_FAN_OUT
    assert {row.endpoint_id for row in rows} == expected
    assert {row.endpoint_id for row in rows if row.handoff} == {integration.pk}
    assert {row.event_id for row in rows} == {rows[0].event_id}
    assert all(row.payload == rows[0].payload for row in rows)
    assert rows[0].payload["event"]["events_id"] == "jobs.create"
    assert rows[0].payload["data"]["id"] == str(job.pk)
    assert {(row.status, row.attempts, row.next_trigger) for row in rows} == {
        ("pending", 0, "scheduled")
    }
    steps = {later.fair_at - earlier.fair_at for earlier, later in pairwise(rows)}
    assert steps == {timedelta(seconds=0.01)}

    JobEvent.objects.update(relayed_at=None)  # as if the relay's mark had been lost
    run_relay()
    assert sorted(WebhookDelivery.objects.values_list("pk", flat=True)) == sorted(
        row.pk for row in rows
    )
    assert WebhookEndpoint.objects.filter(deliveries__isnull=True).count() == 1  # "other"


@pytest.mark.postgres
def test_a_round_with_full_lanes_takes_a_delivery_standing_earlier_in_line() -> None:
    """A round holds a batch of A's burst (its lanes full: no claim for more yet); B's event is
    relayed elsewhere (another process: this round's feeder knows nothing of it). The round's
    next look takes B's delivery, which stands before the last of A's it holds, and none of
    A's later ones."""
    a, b = CompanyFactory(name="A"), CompanyFactory(name="B")
    _burst(a, endpoints=3, jobs=50)  # 150 deliveries, 10 ms apart in A's line
    round_ = sending._Round(senders=8, stop_at=time.monotonic() + 30)
    assert round_.claim() == sending.BATCH
    held = {claim.delivery.pk for lane in round_.lanes.values() for claim in lane}

    assert round_.claim() == 0  # the lanes are full and nothing stands earlier than A's last

    endpoint_for(b, "http://127.0.0.1:9/b", ["jobs.create"])
    JobFactory(company=b)
    run_relay()
    round_.next_jump = 0.0  # JUMP_EVERY later
    assert round_.claim() == 1
    taken = {claim.delivery for lane in round_.lanes.values() for claim in lane}
    assert {d.pk for d in taken} - held == set(
        WebhookDelivery.objects.filter(company=b).values_list("pk", flat=True)
    )
    assert WebhookDelivery.objects.filter(company=a, attempts=0).count() == 150 - sending.BATCH


def test_a_round_asks_for_a_second_worker_without_waiting_for_the_broker(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """A backlog: the round's first claim is full and it wakes another worker process to share
    it. That wake-up was published by the round's coordinator itself: a hung broker held it
    (up to the 10 s socket timeout) from claiming and from recording outcomes, and sends near
    their deadline were recorded after their lease (and sent again). The process's wake-up
    thread publishes it now."""
    settings.JOBTRAIL_WAKEUP_WINDOW = 0.02  # as deployed: wake-ups go through the thread
    _burst(CompanyFactory(), endpoints=3, jobs=50)
    asked, broker_answers = threading.Event(), threading.Event()
    publishers: list[threading.Thread] = []

    def hung_broker(task_name: str, **kwargs: Any) -> bool:
        publishers.append(threading.current_thread())
        asked.set()
        broker_answers.wait(10)
        return True

    monkeypatch.setattr(outbox, "publish_wakeup", hung_broker)
    round_ = sending._Round(senders=8, stop_at=time.monotonic() + 30)
    try:
        assert round_.claim() == sending.BATCH  # returns while the broker does not answer
        assert asked.wait(10)
    finally:
        broker_answers.set()
        outbox.stop_waker()
    assert round_.wakeup_sent
    assert len(publishers) == 1 and publishers[0] is not threading.current_thread()
