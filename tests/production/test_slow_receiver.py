"""A receiver that drips its answer cannot hold a worker slot past the attempt's deadline."""

import re

import pytest

from tests.live import wait_until
from tests.production.stack import TIMERS, ProductionStack, procfile
from tests.production.traffic import register_endpoint
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.production

SLOW_JOBS = 10
DRIP = 2.0  # seconds between the bytes of the slow answer (every read is quick)
BODY = "x" * 100  # so the whole answer takes 200 s


def worker_slots() -> int:
    """How many tasks the Procfile's worker runs at once (its prefork pool)."""
    match = re.search(r"--concurrency[ =](\d+)", procfile()["worker"])
    assert match, procfile()["worker"]
    return int(match.group(1))


def test_a_dripping_receiver_is_cut_off_at_the_deadline_and_does_not_hold_up_another_endpoint(
    stack: ProductionStack, receiver: Receiver
) -> None:
    """Headers at once, then one byte every 2 s: each read is quick, the answer takes 200 s.

    JOBTRAIL_WEBHOOK_TIMEOUT (5 s in this suite) is a hard deadline for the whole attempt, not
    per read: each attempt is cut off then, recorded as a timeout and retried on schedule.
    More slow deliveries than the worker has slots do not hold up another endpoint's delivery
    queued behind them: it goes out while they are still being sent and retried. The claim
    outlives the send, so one webhook-id is never in flight twice.
    """
    assert float(TIMERS["JOBTRAIL_WEBHOOK_TIMEOUT"]) < len(BODY) * DRIP / 10
    http = stack.http()
    receiver.path_replies["/slow"] = Reply(200, BODY, drip=DRIP)
    register_endpoint(http, receiver.url + "/slow", ["jobs.create"])
    register_endpoint(http, receiver.url + "/fast", ["jobs.started"])
    jobs = []
    for _ in range(SLOW_JOBS):
        job = http.post("/api/v1/jobs/", {"type": "export"})
        assert job.status_code == 201, job.text
        jobs.append(job.json())
    # more slow deliveries than the worker has slots: every slot is taken by a dripping send
    slots = worker_slots()
    assert slots < SLOW_JOBS
    wait_until(
        lambda: receiver.in_flight_paths()["/slow"] >= slots, 60, f"{slots} slow sends in flight"
    )

    started = http.post(f"/api/v1/jobs/{jobs[0]['id']}/events/", {"status": "started"})
    assert started.status_code == 201, started.text
    received = receiver.wait_for(lambda rs: any(r.path == "/fast" for r in rs), timeout=120)
    fast = [r for r in received if r.path == "/fast"]
    assert len(fast) == 1, "the healthy endpoint's delivery never arrived (the slots stay held)"
    with receiver.lock:
        log = list(receiver.events)
    before_fast = log[: log.index(("start", "/fast", fast[0].headers["webhook-id"]))]
    # The healthy delivery is behind the slow ones in the queue, but it does not wait for their
    # slots: the dripping endpoint holds at most a quarter of a round's sender threads until
    # it answers (it never does), so the healthy one goes out beside its sends.
    slow_started = sum(1 for kind, path, _ in before_fast if kind == "start" and path == "/slow")
    assert slow_started >= slots

    def delivered() -> list[tuple[str, ...]]:
        return stack.query(
            "SELECT events_id FROM webhooks_webhookdelivery WHERE status = 'delivered'"
        )

    wait_until(lambda: delivered() == [("jobs.started",)], 30, "the healthy delivery")

    def attempts() -> dict[str, list[tuple[int, int | None, str]]]:
        rows = stack.query(
            """
            SELECT d.event_id, a.number, a.status_code, a.error
            FROM webhooks_webhookdelivery d
            LEFT JOIN webhooks_webhookattempt a ON a.delivery_id = d.id
            WHERE d.events_id = 'jobs.create'
            ORDER BY d.event_id, a.number
            """
        )
        by_delivery: dict[str, list[tuple[int, int | None, str]]] = {}
        for event_id, number, status_code, error in rows:
            tried = by_delivery.setdefault(event_id, [])
            if number is not None:
                tried.append((number, status_code, error))
        return by_delivery

    def every_slow_delivery_retried() -> bool:
        slow = attempts()
        return len(slow) == SLOW_JOBS and all(len(tried) >= 2 for tried in slow.values())

    wait_until(every_slow_delivery_retried, 240, "every slow delivery to be tried twice")
    slow = attempts()
    for event_id, tried in slow.items():
        assert [number for number, _, _ in tried] == list(range(1, len(tried) + 1)), event_id
        for _, status_code, error in tried:
            assert status_code is None, (event_id, status_code)
            assert error.startswith("Timed out reading the answer"), error
    statuses = stack.query(
        "SELECT DISTINCT status FROM webhooks_webhookdelivery WHERE events_id = 'jobs.create'"
    )
    assert {s for (s,) in statuses} <= {"pending", "failed"}  # retried until the schedule ends

    with receiver.lock:
        requests = list(receiver.requests)
        max_in_flight = dict(receiver.max_in_flight)
    slow_ids = {r.headers["webhook-id"] for r in requests if r.path == "/slow"}
    assert slow_ids == set(slow)
    # one webhook-id is never sent twice at once (the receiver counts per id)
    assert {max_in_flight[msg_id] for msg_id in slow_ids} == {1}
    assert not any(r.answered for r in requests if r.path == "/slow")
    print(
        f"\n[production] {SLOW_JOBS} dripping deliveries, {slots} worker slots: "
        f"{sum(len(t) for t in slow.values())} attempts, each cut off at the deadline; "
        f"the healthy delivery went out after {slow_started} slow sends had started"
    )
