"""The dispatcher's wake-ups, the batch sender and claim leases, against a real local receiver.

The batch sender runs its sends in threads with their own database connections, so the tests
that run it commit their rows (transactional). The ones where several sender threads write at
once need PostgreSQL: the suite's in-memory SQLite database (shared cache) answers concurrent
writers "database table is locked" at once, where the real SQLite file waits (busy timeout).
"""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from config import outbox
from jobs.models import JobEvent
from ops.models import Wakeup
from tests.factories import CompanyFactory, JobFactory
from tests.receiver import Receiver, Reply
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks import sending, services, tasks
from webhooks.models import WebhookDelivery
from webhooks.sending import send_due

pytestmark = pytest.mark.django_db(transaction=True)


SENDER = services.SENDER_TASK


@pytest.fixture
def wakeups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sender wake-ups published to the broker (the publish itself is recorded, not sent)."""
    published: list[int] = []

    def record(task_name: str, args: Any = ()) -> bool:
        if task_name == SENDER:
            published.append(1)
        return True

    monkeypatch.setattr(outbox, "publish", record)
    return published


def _sender_row() -> Wakeup:
    return Wakeup.objects.get(task=SENDER)


def _deliveries_for(url: str, count: int, company: Any = None) -> list[WebhookDelivery]:
    company = company or CompanyFactory()
    endpoint_for(company, url, ["jobs.create"])
    for _ in range(count):
        JobFactory(company=company)
    return deliveries(endpoint__url=url)


def _lose_messages(rows: list[WebhookDelivery]) -> None:
    """As if the broker lost their messages: queued long ago, never taken."""
    WebhookDelivery.objects.filter(pk__in=[d.pk for d in rows]).update(
        dispatched_at=timezone.now() - timedelta(minutes=10)
    )


def _run_wakeup() -> int:
    """What a worker does with a wake-up message (the task body, in this process)."""
    return int(tasks.send_due_deliveries())


# --- wake-ups ---------------------------------------------------------------------------------


def test_the_dispatcher_wakes_the_sender_once_for_lost_deliveries(wakeups: list[int]) -> None:
    _fresh, lost, later = _deliveries_for("http://127.0.0.1:9/", 3)
    wakeups.clear()  # the relay's own wake-up after its fan-out
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5), dispatched_at=None
    )
    assert services.dispatch_due_deliveries() == 0  # every due row's message is on its way
    assert wakeups == []

    _lose_messages([lost])
    assert services.dispatch_due_deliveries() == 1
    for _ in range(50):  # many dispatcher runs while the wake-up waits in the queue
        assert services.dispatch_due_deliveries() == 0
    assert len(wakeups) == 1

    services.wakeup_received()  # a sender started on it; the row is still lost
    assert services.dispatch_due_deliveries() == 1
    assert len(wakeups) == 2


def test_an_unanswered_wake_up_is_sent_again_ever_more_rarely(wakeups: list[int]) -> None:
    _lose_messages(_deliveries_for("http://127.0.0.1:9/", 1))
    wakeups.clear()
    assert services.dispatch_due_deliveries() == 1

    def queued_ago(seconds: int) -> None:
        Wakeup.objects.filter(task=SENDER).update(
            pending_since=timezone.now() - timedelta(seconds=seconds)
        )

    lost_after = int(outbox.WAKEUP_LOST_AFTER.total_seconds())
    queued_ago(lost_after - 5)
    assert services.dispatch_due_deliveries() == 0
    queued_ago(lost_after + 5)  # presumed lost (e.g. a broker restart): sent again
    assert services.dispatch_due_deliveries() == 1
    queued_ago(lost_after + 5)  # two unanswered: the wait doubles
    assert services.dispatch_due_deliveries() == 0
    queued_ago(2 * lost_after + 5)
    assert services.dispatch_due_deliveries() == 1
    assert len(wakeups) == 3
    assert _sender_row().unanswered == 3


def test_a_wake_up_the_broker_refused_is_tried_again_at_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _lose_messages(_deliveries_for("http://127.0.0.1:9/", 1))

    monkeypatch.setattr(outbox, "publish", lambda name, args=(): False)  # the broker refused
    assert services.dispatch_due_deliveries() == 0
    assert _sender_row().pending_since is None  # nothing is on its way

    published: list[int] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(1) or True)
    assert services.dispatch_due_deliveries() == 1
    assert published == [1]


# --- the batch sender -------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_sender_sends_every_due_unheld_delivery_once(
    receiver: Receiver, wakeups: list[int]
) -> None:
    rows = _deliveries_for(receiver.url + "/hook", 6)
    held, later = rows[0], rows[1]
    _lose_messages(rows)
    claim = services.delivery_claim(delivery_id=held.pk)  # another worker is sending it
    assert claim is not None
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )

    assert _run_wakeup() == 4
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        d.event_id for d in rows[2:]
    )
    assert WebhookDelivery.objects.filter(status="delivered").count() == 4
    assert _run_wakeup() == 0  # nothing left that is due and free
    assert len(receiver.requests) == 4


@pytest.mark.postgres
def test_a_slow_endpoint_does_not_take_every_sender(
    receiver: Receiver, settings: Any, wakeups: list[int]
) -> None:
    settings.JOBTRAIL_WEBHOOK_SENDERS = 3
    receiver.path_replies["/slow"] = Reply(200, delay=1.0)
    company = CompanyFactory()
    slow = _deliveries_for(receiver.url + "/slow", 6, company=company)
    fast = _deliveries_for(receiver.url + "/fast", 1)  # queued after all the slow ones
    _lose_messages(slow + fast)

    assert _run_wakeup() == 7
    log = receiver.events
    before_fast = log[: log.index(("start", "/fast", fast[0].event_id))]
    # oldest first would send all six slow ones before it; the newer fast delivery got the
    # first free sender while the slow endpoint still had older deliveries waiting
    assert sum(1 for kind, path, _ in before_fast if (kind, path) == ("start", "/slow")) < 6
    last_slow_end = max(
        i for i, (kind, path, _) in enumerate(log) if (kind, path) == ("end", "/slow")
    )
    assert log.index(("end", "/fast", fast[0].event_id)) < last_slow_end
    assert WebhookDelivery.objects.filter(status="delivered").count() == 7


def _round_in_a_thread(sent: list[int]) -> threading.Thread:
    """A sender round (30 s budget) in a thread of its own; what it sent goes to ``sent``."""

    def round_() -> None:
        try:
            sent.append(send_due(budget=30))
        finally:
            connection.close()

    sender = threading.Thread(target=round_)
    sender.start()
    return sender


@pytest.mark.postgres
def test_a_long_round_relays_and_sends_new_events_itself(
    receiver: Receiver, wakeups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that holds its worker slot does not wait for the relay task: its feeder thread
    fans a job change committed meanwhile out, and the round sends it."""
    relay_woken: list[str] = []
    monkeypatch.setattr(  # the relay task's wake-ups are recorded, never run
        outbox, "publish", lambda name, args=(): relay_woken.append(name) or True
    )
    receiver.path_replies["/slow"] = Reply(200, delay=3.0)
    [slow] = _deliveries_for(receiver.url + "/slow", 1)
    company = CompanyFactory()
    endpoint_for(company, receiver.url + "/new", ["jobs.create"])
    sent: list[int] = []
    sender = _round_in_a_thread(sent)
    receiver.wait_for(lambda requests: len(requests) == 1)  # the slow one is in flight
    job = JobFactory(company=company)  # committed while the round runs
    sender.join(60)

    assert sent == [2]
    [event] = JobEvent.objects.filter(job=job)
    assert event.relayed_at is not None
    [new] = WebhookDelivery.objects.filter(endpoint__url=receiver.url + "/new")
    assert new.status == "delivered"
    log = receiver.events
    assert log.index(("end", "/new", new.event_id)) < log.index(("end", "/slow", slow.event_id))
    assert "jobs.relay_events" in relay_woken  # its wake-up went out, and was not needed


@pytest.mark.postgres
def test_the_feeder_claims_what_it_relayed_while_the_coordinator_is_busy(
    receiver: Receiver, wakeups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feeder claims the deliveries of the events it relays itself: a coordinator held up
    (recording a burst's outcomes, say) does not hold a new job change's webhook back."""
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): True)  # no relay task runs
    receiver.path_replies["/slow"] = Reply(200, delay=3.0)
    _deliveries_for(receiver.url + "/slow", 1)
    company = CompanyFactory()
    endpoint_for(company, receiver.url + "/new", ["jobs.create"])
    held, claims = threading.Event(), []
    coordinator_claim = sending._Round.claim

    def claim(self: Any) -> int | None:
        claims.append(threading.current_thread().name)
        if len(claims) > 1:
            held.wait(30)  # the coordinator is busy from its second look on
        return coordinator_claim(self)

    monkeypatch.setattr(sending._Round, "claim", claim)
    sent: list[int] = []
    sender = _round_in_a_thread(sent)
    try:
        receiver.wait_for(lambda requests: len(requests) == 1)  # the slow one is in flight
        JobFactory(company=company)  # committed while the coordinator is held up
        seen = receiver.wait_for(lambda requests: any(r.path == "/new" for r in requests), 10)
        assert [r.path for r in seen] == ["/slow", "/new"]
        assert len(claims) == 2  # the coordinator still waits in its second look
    finally:
        held.set()
        sender.join(60)
    assert sent == [2]


def test_a_sender_out_of_time_queues_another_wake_up(
    receiver: Receiver, settings: Any, wakeups: list[int]
) -> None:
    settings.JOBTRAIL_WEBHOOK_SENDERS = 1
    rows = _deliveries_for(receiver.url + "/hook", 3)
    _lose_messages(rows)
    wakeups.clear()
    sent = send_due(budget=0.0)  # the budget is over at once: no claim at all
    assert sent == 0 and receiver.requests == []
    assert len(wakeups) == 1  # the rest is left to the next wake-up, behind waiting messages


# --- leases -----------------------------------------------------------------------------------


def test_a_claim_outlives_its_send_and_the_send_tasks_limits() -> None:
    timeout = float(django_settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    lease = services.attempt_lease().total_seconds()
    soft, hard = tasks.SEND_SOFT_LIMIT, tasks.SEND_HARD_LIMIT
    assert timeout < soft < hard < lease
    assert tasks.send_delivery.soft_time_limit == soft
    assert tasks.send_delivery.time_limit == hard
    round_soft, round_hard = tasks.ROUND_SOFT_LIMIT, tasks.ROUND_HARD_LIMIT
    assert django_settings.JOBTRAIL_WEBHOOK_ROUND_SECONDS + timeout < round_soft < round_hard


def test_an_expired_claim_is_swept_and_sent_with_the_same_webhook_id(
    receiver: Receiver, wakeups: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    [delivery] = _deliveries_for(receiver.url + "/hook", 1)
    stale = services.delivery_claim(delivery_id=delivery.pk)  # a worker that then was killed
    assert stale is not None
    _lose_messages([delivery])  # its message is gone with the worker

    assert services.dispatch_due_deliveries() == 0  # held: not swept while the lease runs
    assert _run_wakeup() == 0
    assert receiver.requests == []

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.dispatch_due_deliveries() == 1
    assert _run_wakeup() == 1
    [request] = receiver.requests
    assert request.headers["webhook-id"] == delivery.event_id
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert [a.number for a in delivery.attempt_log.all()] == [2]

    # the killed worker's attempt, were it to report after all, changes nothing
    services.delivery_record_attempt(
        claim=stale,
        result=services.AttemptResult(started_at=timezone.now(), duration_ms=1, error="late"),
    )
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert "after its lease" in caplog.text
