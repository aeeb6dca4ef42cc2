"""The job event log is the outbox; the relay turns events into deliveries and report builds.

Out-of-order commits, crashes at every step (in-process and a real process SIGKILLed with its
relay transaction open) and re-runs: every event is relayed, once.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from config import outbox
from jobs import relay
from jobs import services as jobs
from jobs.models import Job, JobEvent, JobStatus
from jobs.services import RELAY_TASK
from jobs.tasks import relay_events
from ops.models import Wakeup
from reports.models import Report
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.pg import in_thread, side_connection, wait_for_lock_waits
from tests.relay import run_relay
from webhooks.lanes import WIDE_FAN_OUT
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["_claim", "_fan_out", "_request_reports", "_mark_relayed"]


def _company_with_endpoints(n: int = 2, events: list[str] | None = None) -> Any:
    company = CompanyFactory()
    for i in range(n):
        endpoint_create(company=company, url=f"http://127.0.0.1:9/{i}", events=events or ["*"])
    return company


def _workload(company: Any) -> list[Job]:
    """Unrelayed events of every kind: create, start, push result, completion, failure."""
    done = JobFactory(company=company)
    jobs.job_start(job_id=done.pk)
    jobs.push_result_record(
        job_id=done.pk, data=jobs.PushResultData(push_communication_id="p1", status="success")
    )
    jobs.job_complete(job_id=done.pk)
    failed = JobFactory(company=company)
    jobs.job_fail(job_id=failed.pk, failure_reason="service_timeout")
    return [done, failed]


def _assert_each_event_relayed_once(endpoints: int) -> None:
    events = list(JobEvent.objects.all())
    assert events and all(e.relayed_at is not None for e in events)
    for event in events:
        assert WebhookDelivery.objects.filter(job_event=event).count() == endpoints, event
    assert WebhookDelivery.objects.count() == len(events) * endpoints


# --- payloads ---------------------------------------------------------------------------------


def test_the_webhook_payload_and_the_api_answer_agree(api, company) -> None:
    endpoint_create(company=company, url="http://127.0.0.1:9/", events=["jobs.completed"])
    job = api.post("/api/v1/jobs/", {"type": "export"}, format="json").json()

    answer = api.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "completed"}, format="json")
    assert answer.status_code == 201
    assert not WebhookDelivery.objects.exists()  # nothing fanned out in the request
    run_relay()

    [delivery] = WebhookDelivery.objects.all()
    body = answer.json()
    data = dict(delivery.payload["data"])
    job_event = data.pop("job_event")
    assert data == body["job"]
    assert data["report"] == {"status": "pending", "url": None}
    assert job_event == {key: value for key, value in body.items() if key != "job"}
    # and the job read afterwards says the same about the report
    assert api.get(f"/api/v1/jobs/{job['id']}/").json()["report"]["status"] == "pending"


def test_a_payload_shows_the_job_as_of_its_event_however_late_the_relay_runs() -> None:
    company = _company_with_endpoints(1, ["jobs.started", "jobs.update"])
    job = JobFactory(company=company)
    jobs.job_start(job_id=job.pk, message="go")
    jobs.job_record_progress(job_id=job.pk, effected_records=5, total_records=10)
    jobs.job_complete(job_id=job.pk)
    run_relay()
    started, update = (
        WebhookDelivery.objects.get(events_id=name).payload["data"]
        for name in ("jobs.started", "jobs.update")
    )
    assert (started["status"], started["effected_records"]) == ("processing", 0)
    assert (update["status"], update["effected_records"]) == ("processing", 5)
    assert started["report"]["status"] == update["report"]["status"] == "none"


def test_relayed_events_drop_their_snapshot_and_stay_off_the_timeline(api, company) -> None:
    endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
    job = JobFactory(company=company)
    jobs.push_result_record(
        job_id=job.pk, data=jobs.PushResultData(push_communication_id="p1", status="failed")
    )
    run_relay()
    assert not JobEvent.objects.filter(snapshot__isnull=False).exists()
    [push] = WebhookDelivery.objects.filter(events_id="jobs.push_results.create")
    assert push.payload["data"]["push_result"]["push_communication_id"] == "p1"
    assert push.payload["data"]["push_results"] == {"success": 0, "failed": 1}
    timeline = api.get(f"/api/v1/jobs/{job.pk}/events/").json()
    assert [e["status"] for e in timeline["results"]] == ["created"]


# --- the request path -------------------------------------------------------------------------


def test_an_event_post_does_the_same_queries_whatever_the_number_of_endpoints(
    api, company, settings
) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = 30  # past the default per-company limit
    counts = []
    for endpoints in (1, 30):
        while company.webhook_endpoints.count() < endpoints:
            endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
        job = JobFactory(company=company)
        with CaptureQueriesContext(connection) as queries:
            response = api.post(
                f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}, format="json"
            )
        assert response.status_code == 201
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]
    assert not WebhookDelivery.objects.filter(events_id="jobs.started").exists()


# --- idempotency, crashes ---------------------------------------------------------------------


def test_running_the_relay_again_over_the_same_events_inserts_nothing() -> None:
    company = _company_with_endpoints(2)
    _workload(company)
    run_relay()
    deliveries = set(WebhookDelivery.objects.values_list("job_event_id", "endpoint_id", "event_id"))
    JobEvent.objects.update(relayed_at=None)  # as if every mark had been lost

    assert run_relay() == JobEvent.objects.count()

    again = set(WebhookDelivery.objects.values_list("job_event_id", "endpoint_id", "event_id"))
    assert again == deliveries
    _assert_each_event_relayed_once(endpoints=2)


@pytest.mark.parametrize("step", STEPS)
def test_a_relay_that_fails_after_any_step_loses_nothing_and_repeats_nothing(
    step: str, monkeypatch
) -> None:
    company = _company_with_endpoints(2)
    [done, _] = _workload(company)
    original = getattr(relay, step)

    def fail_after(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise RuntimeError(f"crash after {step}")

    monkeypatch.setattr(relay, step, fail_after)
    with pytest.raises(RuntimeError):
        run_relay()
    assert not WebhookDelivery.objects.exists()
    assert not JobEvent.objects.filter(relayed_at__isnull=False).exists()
    assert not Report.objects.exists()

    monkeypatch.setattr(relay, step, original)
    run_relay()
    _assert_each_event_relayed_once(endpoints=2)
    assert Report.objects.get().job_id == done.pk


@pytest.mark.parametrize("step", STEPS)
def test_a_wide_fan_out_commits_apart_after_the_other_companies_events(
    step: str, monkeypatch, settings
) -> None:
    """A quiet company's event claimed in the same batch as the event of a company fanning out
    to WIDE_FAN_OUT endpoints is relayed in a transaction of its own, first: a crash after any
    step of the wide company's part leaves the quiet one relayed, and the wide event waits for
    the next run, which relays it once. (With the lanes off: one worker relays every company;
    with them on, the wide company's events are the wide lane's.)"""
    settings.JOBTRAIL_WIDE_LANE = False
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = WIDE_FAN_OUT
    wide = _company_with_endpoints(WIDE_FAN_OUT)
    quiet = _company_with_endpoints(1)
    JobFactory(company=wide)
    JobFactory(company=quiet)  # a later id, in the same batch
    original = getattr(relay, step)

    def fail_after(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if kwargs.get("only") is not None or (  # the second claim, or a step of the wide part
            args and isinstance(args[0], list) and {e.company_id for e in args[0]} == {wide.pk}
        ):
            raise RuntimeError(f"crash after {step} of the wide part")
        return result

    monkeypatch.setattr(relay, step, fail_after)
    with pytest.raises(RuntimeError):
        relay.relay_batch()

    [quiet_event] = JobEvent.objects.filter(job__company=quiet)
    [wide_event] = JobEvent.objects.filter(job__company=wide)
    assert quiet_event.relayed_at is not None and wide_event.relayed_at is None
    assert WebhookDelivery.objects.filter(company=quiet).count() == 1
    assert not WebhookDelivery.objects.filter(company=wide).exists()

    monkeypatch.setattr(relay, step, original)
    assert relay.relay_batch() == 1
    assert WebhookDelivery.objects.filter(job_event=wide_event).count() == WIDE_FAN_OUT
    assert WebhookDelivery.objects.filter(job_event=quiet_event).count() == 1


def test_a_batch_of_one_company_stays_one_transaction(monkeypatch, settings) -> None:
    """Only a batch that mixes a wide company with others is split: one company's events (wide
    or not) commit together, and no endpoint count is asked for (the lanes off, as above)."""
    settings.JOBTRAIL_WIDE_LANE = False
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = WIDE_FAN_OUT
    wide = _company_with_endpoints(WIDE_FAN_OUT)
    JobFactory(company=wide)
    JobFactory(company=wide)
    claims: list[Any] = []
    original = relay._claim
    monkeypatch.setattr(relay, "_claim", lambda *a, **k: claims.append(k) or original(*a, **k))

    assert relay.relay_batch() == 2
    assert [claim.get("only") for claim in claims] == [None]  # one claim, no second part
    assert WebhookDelivery.objects.count() == 2 * WIDE_FAN_OUT


def test_bulk_cancel_is_set_based_and_goes_through_the_relay(admin_user) -> None:
    company = _company_with_endpoints(1, ["jobs.failed"])
    active = [JobFactory(company=company) for _ in range(3)]
    finished = JobFactory(company=company)
    jobs.job_complete(job_id=finished.pk)

    with CaptureQueriesContext(connection) as queries:
        result = jobs.jobs_cancel(
            job_ids=[j.pk for j in [*active, finished]], actor=admin_user, source="admin"
        )
    assert (sorted(result[0]), result[1]) == (sorted(j.pk for j in active), 1)
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1  # one insert for all the events
    assert not WebhookDelivery.objects.exists()
    run_relay()
    failed = WebhookDelivery.objects.filter(events_id="jobs.failed")
    assert sorted(d.payload["data"]["failure_reason"] for d in failed) == ["canceled_by_user"] * 3
    assert {d.payload["data"]["job_event"]["actor"] for d in failed} == {admin_user.username}


# --- the sweep --------------------------------------------------------------------------------


def test_the_sweep_wakes_the_relay_only_for_events_that_waited(monkeypatch) -> None:
    published: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(name) or True)
    JobFactory()
    assert relay.relay_sweep() is False  # just written: its own wake-up is on its way
    JobEvent.objects.update(created_at=JobEvent.objects.get().created_at - relay.SWEEP_AFTER)
    assert relay.relay_sweep() is True
    assert published == ["jobs.relay_events"]
    run_relay()
    assert relay.relay_sweep() is False


def test_a_lost_relay_wake_up_is_sent_again_by_the_sweep_once_presumed_lost(monkeypatch) -> None:
    """The wake-up row keeps the sweep from adding messages behind an outstanding wake-up; one
    the broker lost (nobody starts on it) is sent again once presumed lost, and the relay task
    then relays the waiting event."""
    published: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(name) or True)
    company = _company_with_endpoints(1)
    assert outbox.publish_wakeup(RELAY_TASK) is True  # the job change's wake-up ...
    JobFactory(company=company)  # ... whose message the broker then lost
    JobEvent.objects.update(created_at=JobEvent.objects.get().created_at - relay.SWEEP_AFTER)

    assert relay.relay_sweep() is False  # outstanding, not yet presumed lost
    assert published == [RELAY_TASK]
    Wakeup.objects.filter(task=RELAY_TASK).update(
        pending_since=Wakeup.objects.get(task=RELAY_TASK).pending_since - outbox.WAKEUP_LOST_AFTER
    )
    assert relay.relay_sweep() is True
    assert published == [RELAY_TASK, RELAY_TASK]

    assert relay_events.apply().get() == 1  # a worker takes the sweep's wake-up
    assert Wakeup.objects.get(task=RELAY_TASK).pending_since is None
    assert WebhookDelivery.objects.count() == 1
    assert relay.relay_sweep() is False


# --- PostgreSQL: concurrent transactions and a killed process ----------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_after_a_later_one_is_relayed_too() -> None:
    company = _company_with_endpoints(1)
    first, second = JobFactory(company=company), JobFactory(company=company)
    run_relay()
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_transaction() -> None:  # T1: logs event N, commits last
        try:
            with transaction.atomic():
                jobs.job_start(job_id=first.pk)
                inserted.set()
                assert release.wait(30)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    t1 = threading.Thread(target=slow_transaction)
    t1.start()
    assert inserted.wait(30)
    jobs.job_start(job_id=second.pk)  # T2: event N+1, committed first
    n1 = JobEvent.objects.get(job=second, status="started")
    assert not JobEvent.objects.filter(job=first, status="started").exists()  # T1: not visible

    assert run_relay() == 1  # relays N+1; N is not committed
    release.set()
    t1.join(30)
    assert not errors
    first_started = JobEvent.objects.get(job=first, status="started")
    assert first_started.pk < n1.pk and first_started.relayed_at is None

    assert run_relay() == 1  # N: not skipped although a later id was relayed before it
    _assert_each_event_relayed_once(endpoints=1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relays_with_late_results_of_two_jobs_in_opposite_orders_do_not_deadlock() -> None:
    """A relay requests report builds with one upsert of the report rows; rows taken in event
    order let two relays (the relay task and a sender round's feeder) lock jobs X, Y and Y, X,
    and PostgreSQL aborted one ("deadlock detected"). Rows are taken in one order."""
    x, y = (job_in_status(JobStatus.PROCESSING) for _ in range(2))
    jobs.job_complete(job_id=x.pk)
    jobs.job_complete(job_id=y.pk)
    run_relay()
    for job, push_id in ((x, "p1"), (y, "p2"), (y, "p3"), (x, "p4")):  # late results
        jobs.push_result_record(
            job_id=job.pk, data=jobs.PushResultData(push_communication_id=push_id, status="success")
        )
    table = Report._meta.db_table
    hold = {job.pk: side_connection() for job in (x, y)}
    for job_id, held in hold.items():
        held.execute(f"SELECT 1 FROM {table} WHERE job_id = %s FOR UPDATE", [job_id])
    errors: list[BaseException] = []

    def relay_two() -> None:
        relay.relay_batch(batch_size=2)

    first = in_thread(relay_two, errors)  # p1, p2: X then Y in event order
    wait_for_lock_waits(1)
    second = in_thread(relay_two, errors)  # p3, p4: Y then X in event order
    wait_for_lock_waits(2)
    hold[y.pk].rollback()  # in event order the second takes Y and waits for X
    time.sleep(0.2)
    hold[x.pk].rollback()  # ... and the first takes X and waits for Y: a cycle
    first.join(30)
    second.join(30)
    for held in hold.values():
        held.close()

    assert errors == []
    assert not JobEvent.objects.filter(relayed_at__isnull=True).exists()
    assert set(Report.objects.values_list("status", flat=True)) == {"pending"}


KILLED_RELAY = """
import os, sys, time
import django
django.setup()
from django.db import connection
from config import outbox
from jobs import relay

step, marker = sys.argv[1], sys.argv[2]
original = getattr(relay, step)

def hang_after(*args, **kwargs):
    result = original(*args, **kwargs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    with open(marker + ".tmp", "w") as f:
        f.write(str(backend))
    os.rename(marker + ".tmp", marker)
    time.sleep(600)  # the transaction stays open until the process is killed
    return result

setattr(relay, step, hang_after)
relay.events_relay(budget=None)
"""


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    import time

    stop = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > stop:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", STEPS)
def test_a_relay_process_killed_after_any_step_loses_nothing(step: str, tmp_path: Path) -> None:
    company = _company_with_endpoints(2)
    [done, _] = _workload(company)
    marker = tmp_path / "in-transaction"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": _database_url(),
        "PYTHONPATH": str(ROOT),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_RELAY), step, str(marker)],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_for(lambda: marker.exists() or child.poll() is not None, "the relay's step")
        assert child.poll() is None, "the relay process ended before the step"
        backend = int(marker.read_text())
        # its batch is locked: another relay skips it rather than relaying it twice
        assert run_relay() == 0
        child.kill()  # SIGKILL: no cleanup, the transaction is left open
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)

    def gone() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend])
            return cursor.fetchone()[0] == 0

    _wait_for(gone, "PostgreSQL to roll the killed relay's transaction back")
    assert not WebhookDelivery.objects.exists()
    assert not JobEvent.objects.filter(relayed_at__isnull=False).exists()

    run_relay()
    _assert_each_event_relayed_once(endpoints=2)
    assert Report.objects.get().job_id == done.pk
    assert Job.objects.get(pk=done.pk).status == JobStatus.COMPLETED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_company_whose_endpoint_is_being_deleted_does_not_hold_the_others(
    settings, monkeypatch
) -> None:
    """An endpoint DELETE holds the endpoint's row while it deletes its deliveries (seconds
    for hundreds of thousands); a batch fanning out to it waited at its commit for all of it,
    and every other company's events in the batch with it. Past the lock timeout the batch's
    companies are relayed apart: the others go on, the one that waits is held back."""
    settings.JOBTRAIL_RELAY_LOCK_TIMEOUT = 0.3
    relay.held_back.clear()
    busy, quiet = CompanyFactory(), CompanyFactory()
    doomed = endpoint_create(company=busy, url="http://127.0.0.1:9/busy", events=["*"])
    endpoint_create(company=quiet, url="http://127.0.0.1:9/quiet", events=["*"])
    busy_job, quiet_job = JobFactory(company=busy), JobFactory(company=quiet)
    deleting = side_connection()  # what endpoint_delete holds while it deletes its deliveries
    table = doomed._meta.db_table
    deleting.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [doomed.pk])
    apart: list[Any] = []
    relay_apart = relay._relay_apart
    monkeypatch.setattr(
        relay, "_relay_apart", lambda events: apart.append(events) or relay_apart(events)
    )
    try:
        assert relay.relay_batch() == 2  # taken: the quiet event relayed, the busy one held back
        assert len(apart) == 1
        assert WebhookDelivery.objects.filter(company=quiet).count() == 1
        assert not WebhookDelivery.objects.filter(company=busy).exists()
        assert relay.held_back.companies() == {busy.pk}
        # held back: its event is not claimed (no second wait, no split) while the DELETE runs
        JobFactory(company=quiet)
        assert relay.relay_batch() == 1
        assert len(apart) == 1
        assert JobEvent.objects.filter(job=busy_job, relayed_at__isnull=True).exists()
    finally:
        deleting.rollback()  # the DELETE failed: the endpoint stays, its events go to it
        deleting.close()
    relay.held_back.clear()  # (HOLD_BACK seconds later)

    assert relay.relay_batch() == 1
    assert WebhookDelivery.objects.filter(endpoint=doomed).count() == 1
    assert not JobEvent.objects.filter(relayed_at__isnull=True).exists()
    assert JobEvent.objects.filter(job=quiet_job, relayed_at__isnull=False).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_goes_on_with_the_other_companies_after_holding_one_back(settings) -> None:
    """A batch of the busy company's events alone is held back at once, and the run goes on:
    the quiet company's events behind them are relayed in the same run, not at the next
    wake-up."""
    settings.JOBTRAIL_RELAY_LOCK_TIMEOUT = 0.3
    relay.held_back.clear()
    busy, quiet = CompanyFactory(), CompanyFactory()
    doomed = endpoint_create(company=busy, url="http://127.0.0.1:9/busy", events=["*"])
    endpoint_create(company=quiet, url="http://127.0.0.1:9/quiet", events=["*"])
    for _ in range(3):
        JobFactory(company=busy)  # the first batch (3) is theirs alone
    for _ in range(2):
        JobFactory(company=quiet)
    deleting = side_connection()
    deleting.execute(f"SELECT 1 FROM {doomed._meta.db_table} WHERE id = %s FOR UPDATE", [doomed.pk])
    try:
        relay.events_relay(batch_size=3)
    finally:
        deleting.rollback()
        deleting.close()
    relay.held_back.clear()

    assert WebhookDelivery.objects.filter(company=quiet).count() == 2
    assert JobEvent.objects.filter(relayed_at__isnull=True).count() == 3  # busy's, for later


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_table_lock_makes_the_relay_wait_for_later_not_fail(settings) -> None:
    """A migration locking the event table: the claim waits at most the lock timeout, and the
    run relays nothing this time (no error: the feeder would report the database down)."""
    settings.JOBTRAIL_RELAY_LOCK_TIMEOUT = 0.3
    JobFactory()
    migrating = side_connection()
    migrating.execute(f"LOCK TABLE {JobEvent._meta.db_table} IN ACCESS EXCLUSIVE MODE")
    try:
        assert relay.relay_batch() == 0
    finally:
        migrating.rollback()
        migrating.close()

    assert relay.relay_batch() == 1
