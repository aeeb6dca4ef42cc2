"""GET /healthz/operations: heartbeats of beat and the workers, webhook and report backlogs."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery_app import app as celery_app
from config.periodic import register_periodic_tasks
from ops.models import Heartbeat
from ops.scheduler import DATABASE_RETRY, HeartbeatScheduler
from ops.services import oldest_due_delivery, oldest_pending_report, operations_panel
from ops.tasks import heartbeat, wide_heartbeat
from reports.models import Report, ReportStatus
from tests.factories import CompanyFactory, JobFactory
from tests.live import free_port
from webhooks import lanes
from webhooks import services as webhook_services
from webhooks.models import DeliveryStatus, WebhookDelivery

pytestmark = pytest.mark.django_db

URL = "/healthz/operations"


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.JOBTRAIL_OPS_HEARTBEAT_MAX_AGE = 60
    settings.JOBTRAIL_OPS_MAX_DELIVERY_LAG = 300
    settings.JOBTRAIL_OPS_MAX_REPORT_LAG = 900
    settings.JOBTRAIL_OPS_TOKEN = ""


def beat_seen(seconds_ago: float, name: str = "beat") -> None:
    Heartbeat.objects.update_or_create(
        name=name,
        defaults={"beat_at": timezone.now() - timedelta(seconds=seconds_ago), "hostname": "h1"},
    )


def get(**headers: str) -> Any:
    return Client().get(URL, headers=headers)


def due_delivery(*, due_seconds_ago: float, status: str = DeliveryStatus.PENDING) -> None:
    company = CompanyFactory()
    endpoint = webhook_services.endpoint_create(
        company=company, url="https://hooks.example.com/x", events=["jobs.completed"]
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        company=company,
        event_id=f"msg_{WebhookDelivery.objects.count()}",
        events_id="jobs.completed",
        object_id="job-1",
        payload={},
        status=status,
        next_attempt_at=timezone.now() - timedelta(seconds=due_seconds_ago),
    )


def pending_report(*, seconds_ago: float, status: str = ReportStatus.PENDING) -> None:
    report = Report.objects.create(job=JobFactory(), status=status)
    Report.objects.filter(pk=report.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_all_fresh_and_no_backlog_is_ok() -> None:
    beat_seen(5)
    beat_seen(10, name="worker")
    response = get()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert set(body["checks"]) == {"beat", "worker", "webhook_deliveries", "reports"}
    worker = body["checks"]["worker"]
    assert worker["status"] == "ok"
    assert worker["limit_seconds"] == 60
    assert worker["hostname"] == "h1"
    assert 10 <= worker["age_seconds"] < 60
    assert body["checks"]["webhook_deliveries"] == {
        "status": "ok",
        "oldest_due_age_seconds": None,
        "limit_seconds": 300,
    }
    assert body["checks"]["reports"] == {
        "status": "ok",
        "oldest_pending_age_seconds": None,
        "limit_seconds": 900,
    }
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("beat_age", "worker_age", "limit", "statuses", "problems"),
    [
        pytest.param(
            5, 90, 60, ("ok", "stale"),
            ["worker: last heartbeat 9", "beat is alive, so the workers are stalled"],
            id="a stale worker with beat alive is a stalled worker",
        ),
        pytest.param(5, 90, 120, ("ok", "ok"), [], id="the heartbeat limit is a setting"),
        pytest.param(
            300, 290, 60, ("stale", "stale"),
            ["beat: last heartbeat 300 s ago", "beat is not queueing heartbeats either"],
            id="a dead beat is named and explains the worker",
        ),
        pytest.param(
            None, None, 60, ("missing", "missing"),
            ["beat: no heartbeat recorded yet", "worker: no heartbeat recorded yet"],
            id="no heartbeat ever is degraded",
        ),
    ],
)  # fmt: skip
def test_heartbeat_ages(
    settings: Any,
    beat_age: float | None,
    worker_age: float | None,
    limit: int,
    statuses: tuple[str, str],
    problems: list[str],
) -> None:
    settings.JOBTRAIL_OPS_HEARTBEAT_MAX_AGE = limit
    if beat_age is not None:
        beat_seen(beat_age)
    if worker_age is not None:
        beat_seen(worker_age, name="worker")
    response = get()
    body = response.json()
    assert response.status_code == (200 if not problems else 503)
    assert body["status"] == ("ok" if not problems else "degraded")
    assert (body["checks"]["beat"]["status"], body["checks"]["worker"]["status"]) == statuses
    text = " | ".join(body["problems"])
    assert all(part in text for part in problems), text
    assert len(body["problems"]) == len([s for s in statuses if s != "ok"])
    if beat_age is None:
        assert body["checks"]["beat"] == {
            "status": "missing",
            "last_seen_at": None,
            "age_seconds": None,
            "limit_seconds": limit,
            "hostname": None,
        }


def wide_company(settings: Any) -> Any:
    """A company with WIDE_FAN_OUT active endpoints: the wide lane has work."""
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = lanes.WIDE_FAN_OUT
    company = CompanyFactory()
    for n in range(lanes.WIDE_FAN_OUT):
        webhook_services.endpoint_create(
            company=company, url=f"https://hooks.example.com/{n}", events=["*"]
        )
    return company


def test_the_wide_workers_heartbeat_counts_only_while_a_company_fans_out_wide(
    settings: Any,
) -> None:
    beat_seen(1)
    beat_seen(1, name="worker")
    quiet = get()
    assert quiet.status_code == 200 and "wide" not in quiet.json()["checks"]

    wide_company(settings)
    missing = get()
    assert missing.status_code == 503
    assert missing.json()["checks"]["wide"]["status"] == "missing"
    [problem] = missing.json()["problems"]
    assert problem.startswith("wide: no heartbeat recorded yet; beat is alive")
    assert "JOBTRAIL_WIDE_LANE_TAKEOVER, 30 s" in problem

    beat_seen(90, name="wide")
    assert get().json()["checks"]["wide"]["status"] == "stale"
    beat_seen(1, name="wide")
    assert get().status_code == 200

    settings.JOBTRAIL_WIDE_LANE = False  # the lane off: its worker idles, nobody needs it
    beat_seen(600, name="wide")
    off = get()
    assert off.status_code == 200 and "wide" not in off.json()["checks"]


def test_the_operations_panel_lists_the_wide_worker_only_while_a_company_fans_out_wide(
    settings: Any,
) -> None:
    def heartbeats() -> dict[str, str]:
        return {row["name"]: row["status"] for row in operations_panel()["heartbeats"]}

    beat_seen(1)
    assert heartbeats() == {"beat": "ok", "worker": "missing"}
    wide_company(settings)
    assert heartbeats() == {"beat": "ok", "worker": "missing", "wide": "missing"}
    beat_seen(1, name="wide")
    assert heartbeats()["wide"] == "ok"


def test_an_overdue_webhook_delivery_is_a_backlog() -> None:
    beat_seen(1)
    beat_seen(1, name="worker")
    due_delivery(due_seconds_ago=30)
    due_delivery(due_seconds_ago=4000, status=DeliveryStatus.DELIVERED)  # not pending
    due_delivery(due_seconds_ago=-4000)  # pending, due in the future
    assert get().status_code == 200

    due_delivery(due_seconds_ago=400)
    response = get()
    assert response.status_code == 503
    deliveries = response.json()["checks"]["webhook_deliveries"]
    assert deliveries["status"] == "behind"
    assert 400 <= deliveries["oldest_due_age_seconds"] < 460
    assert response.json()["problems"][0].startswith(
        "webhook_deliveries: the oldest due delivery has waited 4"
    )


def test_an_old_pending_report_is_a_backlog() -> None:
    beat_seen(1)
    beat_seen(1, name="worker")
    pending_report(seconds_ago=60)
    pending_report(seconds_ago=5000, status=ReportStatus.READY)
    assert get().status_code == 200

    pending_report(seconds_ago=1000)
    response = get()
    assert response.status_code == 503
    reports = response.json()["checks"]["reports"]
    assert reports["status"] == "behind"
    assert 1000 <= reports["oldest_pending_age_seconds"] < 1060
    assert response.json()["problems"] == [
        f"reports: the oldest pending report has waited {reports['oldest_pending_age_seconds']} s"
        " (limit 900 s)"
    ]


def test_a_database_error_is_reported_without_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("connection to 10.0.0.7 failed: password authentication secret")

    monkeypatch.setattr("ops.services.oldest_due_delivery", unreachable)
    response = get()
    assert response.status_code == 503
    assert response.json()["problems"] == ["database: unreachable"]
    assert "10.0.0.7" not in response.content.decode()


def test_the_token_is_required_when_set(settings: Any) -> None:
    beat_seen(1)
    beat_seen(1, name="worker")
    settings.JOBTRAIL_OPS_TOKEN = "ops-secret-token"

    missing = get()
    assert missing.status_code == 401
    assert missing["Content-Type"] == "application/problem+json"
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["code"] == "not_authenticated"
    assert "checks" not in missing.json()
    assert get(Authorization="Bearer wrong-token").status_code == 401
    assert get(Authorization="Bearer ops-secret-token").status_code == 200


def _worker_heartbeat() -> None:
    register_periodic_tasks()
    assert PeriodicTask.objects.filter(task="ops.heartbeat", enabled=True).exists()
    heartbeat.apply()


def _wide_heartbeat() -> None:
    register_periodic_tasks()
    assert PeriodicTask.objects.filter(task="ops.heartbeat.wide", enabled=True).exists()
    wide_heartbeat.apply()


def _beat_tick() -> None:
    PeriodicTask.objects.update(enabled=False)  # nothing to send: only the heartbeat
    HeartbeatScheduler(app=celery_app).tick()


@pytest.mark.django_db(transaction=True)  # beat runs in autocommit, between transactions
@pytest.mark.parametrize(
    ("name", "record"),
    [("worker", _worker_heartbeat), ("wide", _wide_heartbeat), ("beat", _beat_tick)],
    ids=[
        "the heartbeat task records the worker",
        "the wide lane's heartbeat task records the wide worker",
        "beat's scheduler records its own on a tick",
    ],
)
def test_a_heartbeat_is_recorded(name: str, record: Any) -> None:
    beat_seen(500, name="worker")  # an old one is replaced
    assert not Heartbeat.objects.filter(name="beat").exists()
    record()
    row = Heartbeat.objects.get(name=name)
    assert timezone.now() - row.beat_at < timedelta(seconds=30)
    assert row.hostname


@pytest.mark.django_db(transaction=True)
def test_beat_runs_the_dispatcher_itself_and_queues_only_the_wakeup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stopped worker must not make beat fill the broker with one dispatcher message per
    round: beat runs the sweep in its own process, which queues at most the one wake-up."""
    PeriodicTask.objects.exclude(task="webhooks.dispatch_due_deliveries").update(enabled=False)
    due_delivery(due_seconds_ago=120)  # never queued: the dispatcher must wake the sender
    published: list[str] = []

    def record(sender: str | None = None, **kwargs: Any) -> None:
        published.append(str(sender))

    before_task_publish.connect(record, weak=False)
    try:
        scheduler = HeartbeatScheduler(app=celery_app)
        with caplog.at_level(logging.INFO):
            for _ in range(3):  # three rounds: still one wake-up
                for entry in scheduler.schedule.values():
                    if entry.task == "webhooks.dispatch_due_deliveries":
                        scheduler.apply_entry(entry)
    finally:
        before_task_publish.disconnect(record)

    assert "webhooks.dispatch_due_deliveries" not in published
    assert published.count("webhooks.send_due_deliveries") == 1, published
    # nothing was sent for the sweep itself, so beat does not say it was (every few seconds)
    assert "Sending due task" not in caplog.text
    assert "succeeded in" not in caplog.text  # nor Celery's tracer, that it ran
    assert "woke the webhook sender" in caplog.text  # what the sweep did, once


@pytest.mark.django_db(transaction=True)
def test_beat_sends_the_wide_workers_heartbeat_only_while_a_company_fans_out_wide(
    settings: Any,
) -> None:
    """Nobody may consume the wide lane's queue while no company is wide (its worker not
    deployed): heartbeats sent there would pile up."""
    PeriodicTask.objects.exclude(task="ops.heartbeat.wide").update(enabled=False)
    published: list[tuple[str, str]] = []

    def record(sender: str | None = None, routing_key: str = "", **kwargs: Any) -> None:
        published.append((str(sender), routing_key))

    before_task_publish.connect(record, weak=False)
    try:
        scheduler = HeartbeatScheduler(app=celery_app)
        [entry] = [e for e in scheduler.schedule.values() if e.task == "ops.heartbeat.wide"]
        scheduler.apply_entry(entry)
        assert published == []
        wide_company(settings)
        scheduler.apply_entry(entry)
    finally:
        before_task_publish.disconnect(record)
    assert published == [("ops.heartbeat.wide", lanes.QUEUE)]


@pytest.mark.django_db(transaction=True)
def test_beat_still_logs_the_tasks_it_sends(caplog: pytest.LogCaptureFixture) -> None:
    PeriodicTask.objects.exclude(task="ops.heartbeat").update(enabled=False)
    scheduler = HeartbeatScheduler(app=celery_app)
    [entry] = [e for e in scheduler.schedule.values() if e.task == "ops.heartbeat"]
    with caplog.at_level(logging.INFO):
        scheduler.apply_entry(entry)
    assert "Sending due task" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_beat_says_once_that_it_cannot_send_and_once_that_it_can_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker outage: Celery logged every failed send with two tracebacks (about a hundred in
    half a minute, every due task every second)."""
    from celery.beat import SchedulingError

    PeriodicTask.objects.exclude(task="ops.heartbeat").update(enabled=False)
    scheduler = HeartbeatScheduler(app=celery_app)
    [entry] = [e for e in scheduler.schedule.values() if e.task == "ops.heartbeat"]
    sent = scheduler.apply_async

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise SchedulingError("Couldn't apply scheduled task heartbeat: [Errno 111] refused")

    monkeypatch.setattr(scheduler, "apply_async", refused)
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            scheduler.apply_entry(entry)
        monkeypatch.setattr(scheduler, "apply_async", sent)
        scheduler.apply_entry(entry)

    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in problems] == [logging.WARNING, logging.WARNING]
    assert "cannot send its due tasks" in problems[0].getMessage() and problems[0].exc_info
    assert "sends its due tasks again" in problems[1].getMessage()
    assert caplog.text.count("Sending due task") == 6


@pytest.mark.postgres
def test_the_backlog_queries_use_partial_indexes() -> None:
    """At millions of rows both questions must be one probe of a small partial index."""
    now = timezone.now()
    plans = []
    for queryset in (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)[:1],
        Report.objects.filter(status=ReportStatus.PENDING)
        .order_by("updated_at")
        .values_list("updated_at", flat=True)[:1],
    ):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
        plans.append(queryset.explain())
    assert "webhook_delivery_due" in plans[0], plans[0]
    assert "report_pending" in plans[1], plans[1]
    # the functions the view calls build exactly these queries
    assert oldest_due_delivery(now) is None and oldest_pending_report() is None


@contextmanager
def _database_refusing() -> Iterator[None]:
    """The database unreachable (its port closed) for this process until the block ends."""
    saved = connection.settings_dict.get("PORT"), connection.settings_dict.get("HOST")
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(PORT=saved[0], HOST=saved[1])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_beat_keeps_its_schedule_through_a_database_outage_at_its_re_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """django-celery-beat re-reads the schedule every five minutes and let a database error
    end beat; an outage across that moment must only delay it."""
    scheduler = HeartbeatScheduler(app=celery_app)
    read = dict(scheduler.schedule)
    scheduler._last_full_sync = scheduler._last_full_sync - timedelta(minutes=10)  # re-read due

    with caplog.at_level(logging.WARNING), _database_refusing():
        waits = [scheduler.tick(), scheduler.tick(), scheduler.tick()]  # raises nothing

    assert waits == [DATABASE_RETRY] * 3
    assert scheduler.schedule.keys() == read.keys()  # the last schedule read was kept
    assert caplog.text.count("beat cannot read its schedule") == 1  # once per outage
    assert caplog.text.count("Database gave error") <= 1  # the package: not once per tick
    scheduler.tick()  # the database is back: the schedule is read again
    assert "the database is back" in caplog.text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_beat_started_while_the_database_is_down_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited: list[float] = []
    outage = _database_refusing()
    outage.__enter__()

    def sleep(seconds: float) -> None:  # the database comes back after the second wait
        waited.append(seconds)
        if len(waited) == 2:
            outage.__exit__(None, None, None)

    monkeypatch.setattr("ops.scheduler.time.sleep", sleep)
    try:
        scheduler = HeartbeatScheduler(app=celery_app)
    finally:
        if len(waited) < 2:
            outage.__exit__(None, None, None)

    assert waited == [DATABASE_RETRY, DATABASE_RETRY]
    assert "ops.heartbeat" in {entry.task for entry in scheduler.schedule.values()}
