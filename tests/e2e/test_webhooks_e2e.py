"""Webhooks end to end: gunicorn + a Celery worker + beat on Redis, a real local receiver."""

import time
from collections import Counter

import pytest
from standardwebhooks.webhooks import Webhook

from jobs.models import JobEvent
from tests.e2e.stack import Stack, wait_until
from tests.live import Http
from tests.receiver import Receiver, Reply
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _diagnose(stack: Stack, received: list) -> str:
    seen = {(r.path, r.headers["webhook-id"]) for r in received}
    missing = [
        d
        for d in WebhookDelivery.objects.select_related("endpoint")
        if (
            d.endpoint.url.rsplit("/", 1)[-1] and "/" + d.endpoint.url.rsplit("/", 1)[-1],
            d.event_id,
        )
        not in seen
    ]
    rows = "\n".join(
        f"{d.events_id} {d.status} attempts={d.attempts} next={d.next_attempt_at} "
        f"dispatched={d.dispatched_at} locked={d.locked_until} err={d.last_error[:80]} "
        f"created={d.created_at}"
        for d in missing[:20]
    )
    return f"{len(received)} received; missing:\n{rows}\n{stack.dump_logs()}"


def _dispatcher_rounds(stack: Stack) -> int:
    """How many dispatcher rounds beat has run: the stack's beat logs each sweep it runs at
    DEBUG (JOBTRAIL_DEBUG_LOGGERS=ops.scheduler); beat logs neither "Sending due task" for its
    sweeps nor Celery's tracer lines."""
    return stack.log("beat").count("ran webhooks.dispatch_due_deliveries in beat")


def _register(http: Http, url: str, events: list[str]) -> dict:
    response = http.post("/api/v1/webhook-endpoints/", {"url": url, "events": events})
    assert response.status_code == 201, response.text
    return response.json()


def test_lifecycle_events_arrive_signed(stack: Stack, http: Http, receiver: Receiver) -> None:
    endpoint = _register(
        http, receiver.url + "/hook", ["jobs.create", "jobs.started", "jobs.completed"]
    )
    job = http.post("/api/v1/jobs/", {"type": "export", "total_records": 1}).json()
    assert http.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "started"}).status_code == 201
    done = http.post(
        f"/api/v1/jobs/{job['id']}/events/", {"status": "completed", "effected_records": 1}
    )
    assert done.status_code == 201

    received = receiver.wait_for(lambda rs: len(rs) >= 3, timeout=60)
    assert len(received) == 3, stack.dump_logs()
    webhook = Webhook(endpoint["secret"])
    bodies = [webhook.verify(r.body, r.headers) for r in received]
    assert sorted(b["event"]["events_id"] for b in bodies) == [
        "jobs.completed",
        "jobs.create",
        "jobs.started",
    ]
    for body in bodies:
        assert set(body) == {"event", "data"}
        assert set(body["event"]) == {"dt", "events_id", "object_id"}
        assert body["event"]["object_id"] == job["id"]
        assert body["data"]["id"] == job["id"]
        assert body["data"]["code"] == job["code"]
    completed = next(b for b in bodies if b["event"]["events_id"] == "jobs.completed")
    assert completed["data"]["status"] == "completed"
    assert len({r.headers["webhook-id"] for r in received}) == 3


def test_500_twice_then_200(stack: Stack, http: Http, receiver: Receiver) -> None:
    receiver.reply(Reply(500, "first"), Reply(500, "second"))
    _register(http, receiver.url + "/hook", ["jobs.create"])
    http.post("/api/v1/jobs/", {"type": "export"})

    received = receiver.wait_for(lambda rs: len(rs) >= 3, timeout=60)
    assert len(received) == 3, stack.dump_logs()
    assert len({r.headers["webhook-id"] for r in received}) == 1

    def delivered() -> bool:
        return WebhookDelivery.objects.filter(status="delivered").count() == 1

    wait_until(delivered, 30, "the delivery to be marked delivered")
    delivery = WebhookDelivery.objects.get()
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert [a.response_body for a in attempts] == ["first", "second", "ok"]
    assert all(a.duration_ms >= 0 and a.started_at for a in attempts)
    assert delivery.event_id == received[0].headers["webhook-id"]


def test_broker_outage_delays_but_loses_nothing(
    stack: Stack, http: Http, receiver: Receiver
) -> None:
    _register(http, receiver.url + "/first", ["*"])
    _register(http, receiver.url + "/second", ["jobs.*"])

    stack.stop_broker()
    accepted = 0
    started = time.monotonic()
    for n in range(50):
        job = http.post("/api/v1/jobs/", {"type": "export", "total_records": 2})
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        for method, path, body in [
            ("post", f"/api/v1/jobs/{job_id}/events/", {"status": "started"}),
            ("patch", f"/api/v1/jobs/{job_id}/", {"effected_records": 1, "message": f"job {n}"}),
            (
                "post",
                f"/api/v1/jobs/{job_id}/events/",
                {"status": "completed", "effected_records": 2},
            ),
        ]:
            response = getattr(http, method)(path, body)
            assert response.status_code in (200, 201), response.text
        accepted += 4
    assert accepted == 200
    outage_seconds = time.monotonic() - started
    # the changes and their events committed; no worker heard of them: nothing fanned out yet
    assert JobEvent.objects.filter(relayed_at__isnull=True).count() == 200
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []

    stack.start_broker()
    # the 400, plus jobs.report.ready for each job: the relay requests the 50 report builds
    # once the broker is back (their requests were logged with the completions)
    expected = 500
    received = receiver.wait_for(lambda rs: len(rs) >= expected, timeout=180)
    assert len(received) == expected, _diagnose(stack, received)
    wait_until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == expected,
        60,
        "every delivery to be marked delivered",
    )
    # a whole dispatcher round later (beat runs it in its loop and logs it when it is over:
    # two more logged rounds hold a whole round): still no duplicate
    rounds = _dispatcher_rounds(stack)
    wait_until(lambda: _dispatcher_rounds(stack) >= rounds + 2, 60, "a whole dispatcher round")
    received = list(receiver.requests)
    per_endpoint_event = Counter((r.path, r.headers["webhook-id"]) for r in received)
    assert len(per_endpoint_event) == expected
    assert set(per_endpoint_event.values()) == {1}
    assert Counter(r.path for r in received) == {"/first": 250, "/second": 250}
    print(f"200 events accepted in {outage_seconds:.1f}s with the broker down")
