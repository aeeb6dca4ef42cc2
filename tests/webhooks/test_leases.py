"""config/leases.py on webhook deliveries: one-statement claims, fencing, release; and the batch
sender's query budget (a batch costs a few queries, not a few per delivery)."""

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import leases, sql
from tests.factories import CompanyFactory, JobFactory
from tests.pg import in_thread, side_connection, wait_for_lock_waits
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks import sending, services
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db(transaction=True)


def _due(count: int, url: str = "http://127.0.0.1:9/") -> list[WebhookDelivery]:
    company = CompanyFactory()
    endpoint_for(company, url, ["jobs.create"])
    for _ in range(count):
        JobFactory(company=company)
    return deliveries()


def test_a_slow_claim_statement_shortens_the_time_to_start_a_send_never_lengthens_it(
    monkeypatch: Any, settings: Any
) -> None:
    """The lease ends ``LEASE`` after the ``now`` read before the claim's statement; the time
    left to start a send was counted from after it, so a statement that took seconds (a
    database stall) let a send start, and run, past the lease: another sender could take the
    delivery and send it at the same time."""
    _due(1)
    real_claim = leases.claim

    def slow_claim(*args: Any, **kwargs: Any) -> Any:
        claimed = real_claim(*args, **kwargs)
        time.sleep(1.0)  # the statement's answer comes a second later
        return claimed

    monkeypatch.setattr(leases, "claim", slow_claim)
    before = time.monotonic()
    [claim] = services.deliveries_claim_due(limit=1)

    lease = services.attempt_lease().total_seconds()
    timeout = float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    assert claim.start_by <= before + lease - timeout - services.START_MARGIN + 0.5
    assert claim.deadline <= before + timeout + 0.5


def test_a_claim_is_one_statement_and_returns_the_rows_with_their_endpoint() -> None:
    rows = _due(5)
    with CaptureQueriesContext(connection) as queries:
        claims = services.deliveries_claim_due(limit=3)
        payloads = [c.delivery.payload for c in claims]
        urls = {c.endpoint.url for c in claims}
    assert len(claims) == 3 and all(payloads) and urls == {"http://127.0.0.1:9/"}
    # the claim itself (UPDATE ... RETURNING) and the endpoints, nothing per row, in one
    # transaction (with the mark of a manual attempt it took, when it took one)
    statements = [q["sql"] for q in queries]
    assert len(statements) == 4 and statements[0].startswith("BEGIN") and statements[3] == "COMMIT"
    assert "RETURNING" in statements[1]
    assert [c.delivery.pk for c in claims] == [r.pk for r in rows[:3]]  # oldest first
    assert {c.number for c in claims} == {1}
    assert services.deliveries_claim_due(limit=10)  # the two left
    assert services.deliveries_claim_due(limit=10) == []  # all held now


def test_the_lease_end_is_a_fencing_token() -> None:
    [row] = _due(1)
    base = WebhookDelivery.objects.all()
    first = leases.claim(base, duration=timedelta(seconds=30), limit=5)
    assert [r.pk for r in first.rows] == [row.pk]
    assert leases.claim(base, duration=timedelta(seconds=30), limit=5).rows == []  # held
    assert leases.held(base, {row.pk: first.until}) == {row.pk}

    later = timezone.now() + timedelta(seconds=31)  # the first lease ran out; another claimer
    second = leases.claim(base, duration=timedelta(seconds=30), limit=5, now=later)
    assert second.until > first.until
    assert leases.held(base, {row.pk: first.until}) == set()  # no longer the first one's
    assert leases.release(base, [row.pk], until=first.until) == 0  # cannot release it either
    assert leases.release(base, [row.pk], until=second.until) == 1
    assert WebhookDelivery.objects.get(pk=row.pk).locked_until is None


@pytest.mark.postgres
def test_a_sender_whose_clock_runs_ahead_leaves_a_held_delivery_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leases ran on each claimer's clock: a worker on a host whose clock ran ahead (here by
    more than a lease) found the lease another worker holds already over, took the delivery
    and sent it beside its holder. The database's clock decides now."""
    [row] = _due(1)
    [held] = services.deliveries_claim_due(limit=1)  # another host's sender holds it
    ahead = timezone.now() + services.attempt_lease() + timedelta(seconds=5)
    monkeypatch.setattr(timezone, "now", lambda: ahead)  # this host's clock

    assert services.deliveries_claim_due(limit=1) == []
    assert not services.due_deliveries_exist()  # nor does the dispatcher count it lost
    with pytest.raises(services.DeliveryInProgress):  # nor does "send now" take it over
        services.delivery_send_now(delivery=row)
    assert WebhookDelivery.objects.get(pk=row.pk).locked_until == held.lease_until


@pytest.mark.postgres
def test_a_lease_ends_lease_seconds_after_the_databases_clock() -> None:
    _due(1)
    [claim] = services.deliveries_claim_due(limit=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        [(database_now,)] = cursor.fetchall()
    left = claim.lease_until - database_now
    assert services.attempt_lease() - timedelta(seconds=5) < left <= services.attempt_lease()
    assert WebhookDelivery.objects.get(pk=claim.delivery.pk).locked_until == claim.lease_until


def test_a_batch_of_outcomes_is_recorded_in_a_few_queries() -> None:
    _due(40)
    claims = services.deliveries_claim_due(limit=40)
    now = timezone.now()
    ok = services.AttemptResult(started_at=now, duration_ms=3, status_code=204)
    outcomes = [(c, ok) for c in claims[:30]]
    outcomes += [
        (c, services.AttemptResult(started_at=now, duration_ms=3, status_code=500))
        for c in claims[30:]
    ]
    with CaptureQueriesContext(connection) as queries:
        services.deliveries_record_attempts(outcomes)
    # BEGIN/SAVEPOINT noise aside: one INSERT, one locking SELECT, one UPDATE for the 30
    # successes, one bulk UPDATE for the 10 retries (each has its own time)
    statements = [q["sql"].split()[0] for q in queries if q["sql"].split()[0] != "SAVEPOINT"]
    assert statements.count("INSERT") == 1
    assert statements.count("UPDATE") == 2
    assert len(statements) <= 6, statements
    assert WebhookAttempt.objects.count() == 40
    assert WebhookDelivery.objects.filter(status="delivered").count() == 30
    retried = WebhookDelivery.objects.filter(status="pending")
    assert retried.count() == 10
    assert all(d.locked_until is None and d.next_attempt_at > now for d in retried)


@pytest.mark.postgres
def test_concurrent_claimers_take_disjoint_rows_without_waiting() -> None:
    _due(30)
    taken: list[list[Any]] = []
    barrier = threading.Barrier(3)

    def claimer() -> None:
        try:
            barrier.wait()
            taken.append([c.delivery.pk for c in services.deliveries_claim_due(limit=10)])
        finally:
            connection.close()

    with transaction.atomic():  # a fourth claimer whose row locks are still held
        mine = [c.delivery.pk for c in services.deliveries_claim_due(limit=5)]
        threads = [threading.Thread(target=claimer) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    every = [pk for batch in taken for pk in batch] + mine
    assert len(every) == len(set(every)) == 30  # disjoint, nobody waited for the held rows
    assert len(taken) == 3


def _two_companies_claimed() -> list[services.Claim]:
    """One due delivery for each of two companies' endpoints, both claimed."""
    for name in ("a", "b"):
        company = CompanyFactory()
        endpoint_for(company, f"http://127.0.0.1:9/{name}", ["jobs.create"])
        JobFactory(company=company)
    deliveries()
    claims = services.deliveries_claim_due(limit=10)
    assert len(claims) == 2
    return sorted(claims, key=lambda c: c.endpoint.url)


def _ok() -> services.AttemptResult:
    return services.AttemptResult(started_at=timezone.now(), duration_ms=3, status_code=200)


def test_nul_characters_a_receiver_sends_are_stored_replaced_beside_the_batchs_others() -> None:
    """PostgreSQL refuses NUL in text and jsonb: kept, one answer would undo the whole batch
    (the others' deliveries sent again, its own one re-sent for ever)."""
    bad, good = _two_companies_claimed()
    answer = services.AttemptResult(
        started_at=timezone.now(),
        duration_ms=3,
        status_code=500,
        response_body="a\x00b",
        error="bad\x00line",
        response_headers={"X-Odd": "x\x00y"},
    )

    sending._record([(bad, answer), (good, _ok())])

    assert WebhookDelivery.objects.get(pk=good.delivery.pk).status == DeliveryStatus.DELIVERED
    retried = WebhookDelivery.objects.get(pk=bad.delivery.pk)
    assert retried.status == DeliveryStatus.PENDING and retried.locked_until is None
    assert retried.last_error == "bad\ufffdline"
    logged = WebhookAttempt.objects.get(delivery_id=bad.delivery.pk)
    assert (logged.response_body, logged.response_headers) == ("a\ufffdb", {"X-Odd": "x\ufffdy"})


def test_an_endpoint_delete_never_reads_its_deliveries_into_the_app() -> None:
    """Django's cascade read every delivery (and ran a DELETE per batch of them): an endpoint
    with 400,000 deliveries took 36 s and their memory in the web process. The request now
    only marks the endpoint deleted; the worker deletes its deliveries and their attempts in
    batches of primary keys, and only that endpoint's."""
    kept_company = CompanyFactory()
    endpoint_for(kept_company, "http://127.0.0.1:9/kept", ["jobs.create"])
    JobFactory(company=kept_company)
    rows = _due(30)
    gone = [row for row in rows if row.company_id != kept_company.pk]
    claims = services.deliveries_claim_due(limit=100)
    services.deliveries_record_attempts([(claim, _ok()) for claim in claims])
    endpoint = WebhookEndpoint.objects.get(pk=gone[0].endpoint_id)

    loaded: list[Any] = []
    from_db = WebhookDelivery.from_db.__func__  # type: ignore[attr-defined]

    def counted(cls: Any, *args: Any) -> Any:
        loaded.append(args)
        return from_db(cls, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WebhookDelivery, "from_db", classmethod(counted))
        with CaptureQueriesContext(connection) as request:
            services.endpoint_delete(endpoint=endpoint)
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).deleted_at is not None
        assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == len(gone)
        with CaptureQueriesContext(connection) as worker:
            assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).done

    assert loaded == []  # no delivery came into the app
    writes = [q["sql"] for q in request.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 1  # the request: one UPDATE of the endpoint, whatever it holds
    assert len(worker) <= 20  # per status a list of keys and two DELETEs; then the endpoint
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.filter(pk__in=[row.pk for row in gone]).exists()
    assert not WebhookAttempt.objects.filter(delivery_id__in=[row.pk for row in gone]).exists()
    kept = WebhookDelivery.objects.get(company=kept_company)
    assert WebhookAttempt.objects.filter(delivery=kept).count() == 1


def test_outcomes_are_recorded_after_a_database_outage_of_more_than_a_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recorder gave up after 3 s of a database outage, with about 25 s of the leases
    left: those deliveries were sent again after their leases (duplicates), and a last or
    manual attempt the receiver had accepted ended failed. It tries while the leases last."""
    from django.db import OperationalError

    claims = _two_companies_claimed()
    monkeypatch.setattr(sending, "RECONNECT_WAIT", 0.01)
    monkeypatch.setattr(sending, "RECONNECT_WAIT_MAX", 0.05)
    real = services.deliveries_record_attempts
    back_at = time.monotonic() + 3.5  # the database comes back 3.5 s later
    tries: list[bool] = []

    def outage(outcomes: Any, *, again: bool = False) -> Any:
        tries.append(again)
        if time.monotonic() < back_at:
            raise OperationalError("server closed the connection unexpectedly")
        return real(outcomes, again=again)

    monkeypatch.setattr(services, "deliveries_record_attempts", outage)

    sending._record([(claim, _ok()) for claim in claims])

    assert len(tries) > 2 and tries[-1] is True
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert WebhookAttempt.objects.count() == 2


def test_a_batch_whose_first_lease_ends_in_an_outage_still_records_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two claims of different ages in one batch: the database comes back after the older
    one's lease ended. The whole batch was given up then, though the other's lease lasted."""
    from dataclasses import replace

    from django.db import OperationalError

    older, newer = _two_companies_claimed()
    older = replace(older, lease_ends=time.monotonic() + 2.0)  # 1 s left to commit in
    monkeypatch.setattr(sending, "RECONNECT_WAIT", 0.01)
    monkeypatch.setattr(sending, "RECONNECT_WAIT_MAX", 0.05)
    real = services.deliveries_record_attempts
    back_at = time.monotonic() + 2.0

    def outage(outcomes: Any, *, again: bool = False) -> Any:
        if time.monotonic() < back_at:
            raise OperationalError("server closed the connection unexpectedly")
        return real(outcomes, again=again)

    monkeypatch.setattr(services, "deliveries_record_attempts", outage)

    sending._record([(older, _ok()), (newer, _ok())])

    assert WebhookDelivery.objects.get(pk=newer.delivery.pk).status == DeliveryStatus.DELIVERED
    assert WebhookDelivery.objects.get(pk=older.delivery.pk).status == DeliveryStatus.PENDING
    assert list(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == [newer.delivery.pk]


def test_a_delivery_deleted_with_its_endpoint_while_sent_does_not_undo_the_batch() -> None:
    gone, kept = _two_companies_claimed()
    services.endpoint_delete(endpoint=gone.endpoint)
    assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).deliveries == 1

    services.deliveries_record_attempts([(gone, _ok()), (kept, _ok())])  # raises nothing

    assert WebhookDelivery.objects.get(pk=kept.delivery.pk).status == DeliveryStatus.DELIVERED
    assert list(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == [kept.delivery.pk]


def test_when_a_batch_cannot_be_recorded_each_outcome_is_recorded_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused, other = _two_companies_claimed()
    decide = services._outcome

    def refusing(claim: services.Claim, *args: Any) -> dict[str, Any]:
        if claim.delivery.pk == refused.delivery.pk:
            raise RuntimeError("a row the database refuses")
        return decide(claim, *args)

    monkeypatch.setattr(services, "_outcome", refusing)

    sending._record([(refused, _ok()), (other, _ok())])

    assert WebhookDelivery.objects.get(pk=other.delivery.pk).status == DeliveryStatus.DELIVERED
    still = WebhookDelivery.objects.get(pk=refused.delivery.pk)  # retried when its lease ends
    assert still.status == DeliveryStatus.PENDING and still.locked_until == refused.lease_until
    assert list(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == [other.delivery.pk]


def _overlapping(
    first: Callable[[], object], second: Callable[[], object], *, then: Callable[[], object] = list
) -> list[BaseException]:
    """Run ``first`` in a transaction of its own thread, and ``second`` in another thread once
    ``first`` is done, while its transaction is still open: ``second`` meets ``first``'s locks
    and uncommitted rows. 0.3 s later (``second`` is waiting by then) ``then`` runs in
    ``first``'s transaction, which then ends. Returns what either raised."""
    done, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                first()
                done.set()
                release.wait(10)
                then()
        finally:
            done.set()

    holder = in_thread(hold, errors)
    assert done.wait(10)
    other = in_thread(second, errors)
    time.sleep(0.3)
    release.set()
    for thread in (holder, other):
        thread.join(timeout=30)
    return errors


@pytest.mark.postgres
def test_a_redelivery_leaves_alone_a_delivery_made_pending_and_claimed_meanwhile() -> None:
    """Two redeliveries of one failed delivery at once (a double click): the second waits for
    the first, whose sender claimed it, and must not clear that lease (one webhook-id would
    then be in flight twice)."""
    [row] = _due(1)
    WebhookDelivery.objects.filter(pk=row.pk).update(status=DeliveryStatus.FAILED)
    counts: dict[str, int] = {}

    def first() -> None:
        counts["first"] = services._redeliver(WebhookDelivery.objects.filter(pk=row.pk))
        services.deliveries_claim_due(limit=1)  # its sender took it

    def second() -> None:  # reads the row while the first's change is not committed yet
        counts["second"] = services._redeliver(WebhookDelivery.objects.filter(pk=row.pk))

    assert _overlapping(first, second) == []

    assert counts == {"first": 1, "second": 0}
    assert WebhookDelivery.objects.get(pk=row.pk).locked_until is not None  # the sender's lease


@pytest.mark.postgres
def test_an_endpoint_deleted_while_an_attempt_of_its_is_being_recorded_goes_in_a_later_run() -> (
    None
):
    """The recorder holds the delivery's row lock and logs an attempt: the deletion neither
    waits for it nor deletes the delivery under it (the attempt would then reference a deleted
    delivery: a foreign-key error at a commit). It leaves that delivery, and so the endpoint's
    row, to a later run, which deletes the delivery with the attempt."""
    gone, _ = _two_companies_claimed()
    services.endpoint_delete(endpoint=gone.endpoint)
    runs: list[bool] = []

    def delete_pending() -> None:
        runs.append(services.endpoints_delete_pending(deadline=time.monotonic() + 60).done)

    errors = _overlapping(
        lambda: services.deliveries_record_attempts([(gone, _ok())]),
        delete_pending,
    )

    assert errors == [] and runs == [True]
    assert WebhookAttempt.objects.filter(delivery_id=gone.delivery.pk).count() == 1
    assert WebhookEndpoint.objects.filter(pk=gone.endpoint.pk).exists()

    assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).done
    assert not WebhookDelivery.objects.filter(pk=gone.delivery.pk).exists()
    assert not WebhookAttempt.objects.filter(delivery_id=gone.delivery.pk).exists()
    assert not WebhookEndpoint.objects.filter(pk=gone.endpoint.pk).exists()


@pytest.mark.postgres
def test_the_recorder_and_a_redelivery_lock_in_one_order() -> None:
    """A batch holds two deliveries of one endpoint: the first sent meanwhile by another sender
    (its lease lapsed), the second still this claim's. Others lock an endpoint's deliveries in
    primary-key order (a redelivery of its failed ones); had the recorder locked the held one
    first and the other after, each would wait for the other (PostgreSQL aborts one: a 500
    for the redelivery, or the batch recorded again one by one)."""
    _due(2)
    earlier, later = sorted(services.deliveries_claim_due(limit=10), key=lambda c: c.delivery.pk)
    WebhookDelivery.objects.filter(pk=earlier.delivery.pk).update(
        status=DeliveryStatus.DELIVERED, locked_until=None
    )
    rows = WebhookDelivery.objects.select_for_update()

    errors = _overlapping(
        lambda: list(rows.filter(pk=earlier.delivery.pk)),  # the redelivery's first lock
        lambda: services.deliveries_record_attempts([(earlier, _ok()), (later, _ok())]),
        then=lambda: list(rows.filter(pk=later.delivery.pk)),  # ... and its second
    )

    assert errors == []
    assert WebhookDelivery.objects.get(pk=later.delivery.pk).status == DeliveryStatus.DELIVERED
    assert WebhookAttempt.objects.filter(delivery_id=later.delivery.pk).count() == 1


def test_a_batch_recorded_again_after_a_lost_commit_answer_logs_each_attempt_once() -> None:
    """The connection died after the COMMIT reached the server but before its answer came
    back: the sender records the batch again (``again=True``), which must not log the same
    attempts twice nor undo the outcome."""
    first, second = _two_companies_claimed()
    outcomes = [(first, _ok()), (second, _ok())]
    services.deliveries_record_attempts(outcomes)

    services.deliveries_record_attempts(outcomes, again=True)

    assert WebhookAttempt.objects.count() == 2
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


def _late_fan_out(template: WebhookDelivery, errors: list[BaseException]) -> threading.Thread:
    """A relay's fan-out that read the endpoint as active before its DELETE committed: it
    commits one more delivery to it now, in a thread (a transaction) of its own."""

    def fan_out() -> None:
        template.pk, template.event_id = uuid.uuid4(), f"msg_late_{uuid.uuid4().hex}"
        template.job_event = None
        template.save(force_insert=True)

    return in_thread(fan_out, errors)


def _deleted_with_one_delivery() -> tuple[WebhookEndpoint, WebhookDelivery]:
    company = CompanyFactory()
    endpoint = services.endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
    JobFactory(company=company)
    [template] = deliveries()
    services.endpoint_delete(endpoint=endpoint)
    return endpoint, template


@pytest.mark.postgres
def test_a_delivery_a_relay_commits_before_the_row_is_locked_waits_for_a_later_run() -> None:
    """The fan-out commits after the deliveries were deleted, just before the worker locks the
    endpoint's row: the row stays (a delivery refers to it), the next run deletes both."""
    endpoint, template = _deleted_with_one_delivery()
    real_lock_all = sql.lock_all
    errors: list[BaseException] = []

    def fan_out_first(queryset: Any) -> int:
        if queryset.model is WebhookEndpoint:
            _late_fan_out(template, errors).join(30)
        return real_lock_all(queryset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sql, "lock_all", fan_out_first)
        assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).done

    assert errors == []
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1

    assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).done
    assert not WebhookDelivery.objects.exists()
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.postgres
def test_a_delivery_a_relay_commits_after_the_row_is_locked_is_refused() -> None:
    """The fan-out commits while the worker holds the endpoint's row: its foreign key check
    waits for the row, finds it deleted and refuses the commit (the relay then relays its
    batch again, without the endpoint); nothing refers to a deleted row."""
    endpoint, template = _deleted_with_one_delivery()
    real_lock_all = sql.lock_all
    errors: list[BaseException] = []
    late: list[threading.Thread] = []

    def fan_out_meanwhile(queryset: Any) -> int:
        locked = real_lock_all(queryset)
        if queryset.model is WebhookEndpoint:
            late.append(_late_fan_out(template, errors))
            wait_for_lock_waits(1)  # its commit waits for the row
        return locked

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sql, "lock_all", fan_out_meanwhile)
        assert services.endpoints_delete_pending(deadline=time.monotonic() + 60).done
    late[0].join(30)

    assert [type(e).__name__ for e in errors] == ["IntegrityError"]
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.exists()


def test_the_deletion_takes_an_endpoints_pending_deliveries_first(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _due(4)
    WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows[:2]]).update(
        status=DeliveryStatus.DELIVERED
    )
    services.endpoint_delete(endpoint=WebhookEndpoint.objects.get(pk=rows[0].endpoint_id))
    monkeypatch.setattr(sql, "DELETE_BATCH", 2)

    assert not services.endpoints_delete_pending(deadline=0).done  # one batch, then out of time

    left = set(WebhookDelivery.objects.values_list("status", flat=True))
    assert left == {DeliveryStatus.DELIVERED}  # the pending two went first


def test_a_delivery_in_no_known_status_does_not_keep_a_deleted_endpoint() -> None:
    rows = _due(2)
    WebhookDelivery.objects.filter(pk=rows[0].pk).update(status="retrying")  # no such status
    services.endpoint_delete(endpoint=WebhookEndpoint.objects.get(pk=rows[0].endpoint_id))

    assert services.endpoints_delete_pending(deadline=time.monotonic() + 60) == (1, 2, True)
    assert not WebhookDelivery.objects.exists() and not WebhookEndpoint.objects.exists()


def test_a_deleted_endpoint_cannot_be_resumed_or_rotated_from_an_earlier_read() -> None:
    """A PATCH looks the endpoint up, checks the new URL (up to 3 s), then updates: a DELETE
    that committed meanwhile was undone by a resume (active again: fanned out to and sent to,
    while its company got 404 for it)."""
    [row] = _due(1)
    read_before = WebhookEndpoint.objects.get(pk=row.endpoint_id)
    services.endpoint_delete(endpoint=read_before)

    with pytest.raises(services.EndpointNotFound):
        services.endpoint_update(endpoint=read_before, is_active=True)
    with pytest.raises(services.EndpointNotFound):
        services.endpoint_rotate_secret(endpoint=read_before)

    stored = WebhookEndpoint.objects.get(pk=read_before.pk)
    assert stored.deleted_at is not None and not stored.is_active
    assert stored.secret == read_before.secret
    assert WebhookDelivery.objects.get(pk=row.pk).next_attempt_at == row.next_attempt_at


def test_nothing_is_fanned_out_to_a_deleted_endpoint_even_if_marked_active() -> None:
    [row] = _due(1)
    endpoint = WebhookEndpoint.objects.get(pk=row.endpoint_id)
    services.endpoint_delete(endpoint=endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True)  # as a bug would

    JobFactory(company=endpoint.company)
    deliveries()

    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1  # the earlier one


def test_a_410_from_a_deleted_endpoint_does_not_mark_it_gone() -> None:
    """The sender's 410 disable would set a reason on the deleted endpoint: its remaining
    deliveries (a hand-off among them) would be failed instead of deleted with it, and the
    hand-off's job failed, for an endpoint its company deleted."""
    gone, _ = _two_companies_claimed()
    services.endpoint_delete(endpoint=gone.endpoint)
    answer = services.AttemptResult(started_at=timezone.now(), duration_ms=3, status_code=410)

    services.deliveries_record_attempts([(gone, answer)])

    assert WebhookEndpoint.objects.get(pk=gone.endpoint.pk).disabled_reason == ""


def test_a_deletion_that_ran_out_of_time_is_queued_again(one_batch_per_run: list[str]) -> None:
    from webhooks.tasks import delete_endpoints

    published = one_batch_per_run
    [row, *_] = _due(3)
    services.endpoint_delete(endpoint=WebhookEndpoint.objects.get(pk=row.endpoint_id))
    published.clear()  # what the job creations and the DELETE's commit woke

    delete_endpoints()
    assert WebhookDelivery.objects.count() == 1
    assert published == [services.DELETE_ENDPOINTS_TASK]

    delete_endpoints()  # the queued run
    assert not WebhookDelivery.objects.exists() and not WebhookEndpoint.objects.exists()
    assert published == [services.DELETE_ENDPOINTS_TASK]


@pytest.mark.postgres
def test_resuming_an_endpoint_and_a_410_being_recorded_never_wait_for_each_other() -> None:
    """The recorder holds its deliveries and then disables the endpoint on a 410; a resume
    locked the endpoint and then updated its pending deliveries: each waited for the other and
    PostgreSQL aborted one. A resume locks the pending deliveries first."""
    [delivery] = _due(1)
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)  # paused
    table, endpoints = WebhookDelivery._meta.db_table, WebhookEndpoint._meta.db_table
    recorder = side_connection()
    recorder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [delivery.pk])
    errors: list[BaseException] = []

    thread = in_thread(lambda: services.endpoint_update(endpoint=endpoint, is_active=True), errors)
    wait_for_lock_waits(1)  # the resume waits for the delivery the recorder holds
    try:
        recorder.execute(  # ... which disables the endpoint (a 410) before it commits
            f"UPDATE {endpoints} SET is_active = false, disabled_reason = 'gone' WHERE id = %s",
            [endpoint.pk],
        )
        recorder.commit()
    except Exception as exc:
        errors.append(exc)
    finally:
        recorder.close()
    thread.join(30)

    assert errors == []
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).is_active  # the resume came last


@pytest.mark.postgres
def test_a_redelivery_and_a_delete_of_the_same_deliveries_never_wait_for_each_other() -> None:
    """Redelivering an endpoint's failed deliveries locked them in the list's order (newest
    first) while an endpoint DELETE (and the recorder) lock in primary-key order: holding one
    each, they waited for each other. Redelivery locks in primary-key order too."""
    first, second = _due(2)
    WebhookDelivery.objects.filter(pk__in=[first.pk, second.pk]).update(
        status=DeliveryStatus.FAILED
    )
    low, high = sorted([first, second], key=lambda d: d.pk)
    # the higher id is the newer one: the list's order (newest first) takes it first
    WebhookDelivery.objects.filter(pk=high.pk).update(created_at=low.created_at + timedelta(1))
    endpoint = WebhookEndpoint.objects.get(pk=low.endpoint_id)
    table = WebhookDelivery._meta.db_table
    deleting = side_connection()  # locks in primary-key order, as endpoint_delete does
    deleting.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [low.pk])
    errors: list[BaseException] = []
    redelivered: list[int] = []

    def redeliver() -> None:
        since = timezone.now() - timedelta(days=1)
        redelivered.append(services.endpoint_redeliver_failed(endpoint=endpoint, since=since))

    thread = in_thread(redeliver, errors)
    wait_for_lock_waits(1)
    try:
        deleting.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [high.pk])
        deleting.rollback()
    except Exception as exc:
        errors.append(exc)
    finally:
        deleting.close()
    thread.join(30)

    assert errors == []
    assert redelivered == [2]
