"""A backlog of due deliveries while no worker runs leaves a handful of broker messages."""

import time
from collections import Counter

import pytest

from tests.live import wait_until
from tests.production.stack import ProductionStack, RabbitBroker
from tests.production.traffic import register_endpoint
from tests.receiver import Receiver

pytestmark = pytest.mark.production

BACKLOG = 20_000
ENDPOINTS = 20
DISPATCHER_ROUNDS = 60  # 5 minutes at the default 5 s interval; the stack's interval is 1 s
# RabbitMQ: the drain is only started (see the test's docstring)
RABBITMQ_DRAIN = 1_000
# What beat publishes for the workers while none consumes (one message per task interval; each
# expires after its interval, so a returning worker drops the stale ones). The dispatcher is not
# among them: beat runs it itself (config.periodic.BEAT_SWEEPS).
PERIODIC = {
    "jobs.expire_stale_jobs",
    "reports.queue_pending_reports",
    "ops.heartbeat",
    "webhooks.purge_old_deliveries",
    "jobs.purge_idempotency_keys",
}


def insert_backlog(stack: ProductionStack, receiver: Receiver) -> None:
    """``BACKLOG`` due deliveries over ``ENDPOINTS`` endpoints, in one set-based INSERT."""
    http = stack.http()
    endpoints = [
        register_endpoint(http, f"{receiver.url}/b{n}", ["*"])["id"] for n in range(ENDPOINTS)
    ]
    [(company_id,)] = stack.query("SELECT DISTINCT company_id FROM webhooks_webhookendpoint")
    inserted = stack.execute(
        """
        INSERT INTO webhooks_webhookdelivery (
            id, endpoint_id, company_id, event_id, events_id, object_id, payload, status,
            attempts, next_attempt_at, dispatched_at, locked_until, next_trigger,
            last_status_code, last_error, delivered_at, created_at, updated_at)
        SELECT gen_random_uuid(), (%s::uuid[])[1 + n %% %s], %s, 'msg_' || md5(n::text),
            'jobs.create', n::text,
            jsonb_build_object('event', jsonb_build_object(
                'dt', now(), 'events_id', 'jobs.create', 'object_id', n::text),
                'data', '{}'::jsonb),
            'pending', 0, now(), NULL, NULL, 'scheduled', NULL, '', NULL, now(), now()
        FROM generate_series(1, %s) AS n
        """,
        [endpoints, ENDPOINTS, company_id, BACKLOG],
    )
    assert inserted == BACKLOG


def dispatcher_rounds(stack: ProductionStack) -> int:
    """How many dispatcher rounds beat has run: the stack's beat logs each sweep it runs at
    DEBUG (JOBTRAIL_DEBUG_LOGGERS=ops.scheduler); beat logs neither "Sending due task" for its
    sweeps nor Celery's tracer lines."""
    return stack.log("beat").count("ran webhooks.dispatch_due_deliveries in beat")


def queued_tasks(stack: ProductionStack) -> Counter[str]:
    """The task names of every message in the broker's queue (Redis: and its unacked ones)."""
    queued = stack.broker.queued_tasks()
    if isinstance(stack.broker, RabbitBroker):  # what was read and put back is all it holds
        assert stack.broker.queue_length() == sum(queued.values()), queued
    return queued


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
def test_a_backlog_without_a_worker_leaves_a_handful_of_messages_in_the_broker(
    stack: ProductionStack, receiver: Receiver, broker: str
) -> None:
    """20,000 due deliveries, no worker, the dispatcher running round after round.

    The issue's case: the worker is stopped for 5 minutes while the dispatcher keeps running
    (60 rounds at its default 5 s interval). The broker must hold at most one message per due
    delivery or per batch, not one more per round. Beat runs the dispatcher itself (it is a
    sweep: ``config.periodic.BEAT_SWEEPS``), here every second (the stack's
    ``JOBTRAIL_WEBHOOK_DISPATCH_INTERVAL``), so 60 rounds take a minute: a wake-up nobody
    answers is re-sent after 60 s, then 120 s..., so 5 real minutes would leave 3; this minute
    leaves 1 or 2. Beat's messages for the workers wait in the queue like every periodic task's
    and are counted apart (beat is stopped while the queue is read, so that RabbitMQ's count and
    the messages read agree).

    Then the worker starts and works the backlog off, each delivery sent once. The whole
    backlog is waited for on Redis only: working it off (the batch sender claiming rows from
    the database, a wake-up per round) does not depend on the broker, and it takes minutes of
    the suite's budget; on RabbitMQ the test waits for the first ``RABBITMQ_DRAIN``.
    """
    stack.processes.stop("worker")
    insert_backlog(stack, receiver)

    rounds_before = dispatcher_rounds(stack)
    began = time.monotonic()
    wait_until(
        lambda: dispatcher_rounds(stack) - rounds_before >= DISPATCHER_ROUNDS,
        DISPATCHER_ROUNDS * 5,
        f"{DISPATCHER_ROUNDS} dispatcher rounds in beat",
    )
    stack.processes.stop("beat")  # the queue holds still while it is read
    queued = queued_tasks(stack)
    print(
        f"\n[production] broker={broker}: {dispatcher_rounds(stack) - rounds_before} dispatcher "
        f"rounds over {BACKLOG} due deliveries in {time.monotonic() - began:.0f}s; the broker "
        f"holds {dict(queued)}"
    )
    assert queued["webhooks.send_delivery"] == 0  # no message per due delivery
    assert queued["webhooks.dispatch_due_deliveries"] == 0  # beat runs the dispatcher itself
    # one wake-up, sent again only once presumed lost (after 60 s, then 120 s...)
    assert 1 <= queued["webhooks.send_due_deliveries"] <= 2, queued
    assert set(queued) <= {"webhooks.send_due_deliveries", *PERIODIC}, queued

    stack.start_worker()
    stack.start_beat()
    began = time.monotonic()

    def delivered() -> int:
        [(count,)] = stack.query(
            "SELECT count(*) FROM webhooks_webhookdelivery WHERE status = 'delivered'"
        )
        return int(count)

    expected = BACKLOG if broker == "redis" else RABBITMQ_DRAIN
    wait_until(lambda: delivered() >= expected, 900, f"{expected} deliveries to be delivered")
    print(f"[production] {expected} deliveries delivered in {time.monotonic() - began:.0f}s")
    with receiver.lock:
        ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(ids) >= expected
    assert set(ids.values()) == {1}  # each sent once
