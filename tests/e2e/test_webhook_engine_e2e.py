"""The delivery engine under a slow receiver and a backlog: gunicorn, a Celery worker and beat
on a private Redis, a real local receiver."""

import contextlib
import json
import subprocess
import sys
from collections import Counter

import pytest
import redis
from django.db import connection

from tests.e2e.conftest import Http
from tests.e2e.stack import ROOT, Stack, wait_until
from tests.factories import CompanyFactory
from tests.receiver import Receiver, Reply, running_receiver
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _register(http: Http, url: str, events: list[str]) -> dict:
    response = http.post("/api/v1/webhook-endpoints/", {"url": url, "events": events})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.stack_env(JOBTRAIL_WEBHOOK_TIMEOUT="3")
def test_a_dripping_receiver_is_cut_off_and_does_not_hold_up_another_endpoint(
    stack: Stack, http: Http, receiver: Receiver
) -> None:
    # headers at once, then one byte every 2 s: every read is quick, the answer takes 200 s
    receiver.path_replies["/slow"] = Reply(200, "x" * 100, drip=2.0)
    _register(http, receiver.url + "/slow", ["jobs.create"])
    _register(http, receiver.url + "/fast", ["jobs.started"])
    jobs = [http.post("/api/v1/jobs/", {"type": "export"}).json() for _ in range(10)]
    # more slow deliveries than the worker has threads (8): every one of them is dripping
    wait_until(lambda: receiver.in_flight_paths()["/slow"] >= 8, 60, "8 slow sends in flight")

    started = http.post(f"/api/v1/jobs/{jobs[0]['id']}/events/", {"status": "started"})
    assert started.status_code == 201
    received = receiver.wait_for(lambda rs: any(r.path == "/fast" for r in rs), timeout=60)
    [fast] = [r for r in received if r.path == "/fast"]
    log = list(receiver.events)
    before_fast = log[: log.index(("start", "/fast", fast.headers["webhook-id"]))]
    slow_in_flight = sum(
        1 if kind == "start" else -1 for kind, path, _ in before_fast if path == "/slow"
    )
    assert slow_in_flight > 0, "the healthy endpoint's delivery waited for the slow ones"
    wait_until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == 1,
        30,
        "the healthy delivery to be marked delivered",
    )

    def retried() -> bool:
        slow = WebhookDelivery.objects.filter(events_id="jobs.create")
        return all(d.attempt_log.count() >= 2 for d in slow)

    wait_until(retried, 120, "every slow delivery to be tried twice")
    for delivery in WebhookDelivery.objects.filter(events_id="jobs.create"):
        attempts = list(delivery.attempt_log.order_by("number"))
        assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
        for attempt in attempts:
            assert attempt.status_code is None
            assert attempt.error.startswith("Timed out reading the answer"), attempt.error
        assert delivery.status in ("pending", "failed")  # retried, until the schedule ends
    slow_ids = {r.headers["webhook-id"] for r in receiver.requests if r.path == "/slow"}
    assert len(slow_ids) == 10
    # one webhook-id is never sent twice at once (the receiver counts per id)
    assert {receiver.max_in_flight[msg_id] for msg_id in slow_ids} == {1}
    assert not any(r.answered for r in receiver.requests if r.path == "/slow")


BACKLOG = 20_000
ENDPOINTS = 20
DISPATCHER_RUNS = 60
DISPATCHER = """
import sys, time
import django
django.setup()
from webhooks.tasks import dispatch_due_deliveries
for _ in range(int(sys.argv[1])):
    dispatch_due_deliveries.apply()  # the task, run as a worker runs beat's message
    time.sleep(float(sys.argv[2]))
"""


def _insert_backlog(receiver: Receiver) -> None:
    company = CompanyFactory(name="Backlog Co")
    endpoints = [
        str(services.endpoint_create(company=company, url=f"{receiver.url}/b{n}", events=["*"]).pk)
        for n in range(ENDPOINTS)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
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
            [endpoints, ENDPOINTS, str(company.pk), BACKLOG],
        )


def _queued_tasks(stack: Stack) -> Counter[str]:
    """The task names of every message in the private Redis: the queue and the unacked ones."""
    client = redis.Redis(host="127.0.0.1", port=stack.redis_port)
    messages = [json.loads(raw) for raw in client.lrange("celery", 0, -1)]
    messages += [json.loads(raw)[0] for raw in client.hvals("unacked")]
    return Counter(m["headers"]["task"] for m in messages)


def test_a_backlog_without_a_worker_leaves_a_handful_of_messages_in_the_broker(
    stack: Stack, receiver: Receiver
) -> None:
    """20,000 due deliveries, no worker sending, the dispatcher running round after round.

    The issue's case: sends make no progress while the dispatcher keeps running (5 minutes at
    its 5 s interval: 60 rounds). Beat only publishes the dispatcher's message and a worker runs
    it, so with the worker stopped nobody would run it; here a separate process runs the
    dispatcher task exactly as a worker runs each of beat's messages, 60 rounds at 1 s (the
    same rounds in a fifth of the time). Beat keeps running too; its own messages wait in the
    queue like any periodic task's and are counted apart.
    """
    stack.stop_worker()
    _insert_backlog(receiver)

    subprocess.run(
        [sys.executable, "-c", DISPATCHER, str(DISPATCHER_RUNS), "1"],
        cwd=ROOT,
        env=stack.env(),
        check=True,
        timeout=600,
    )
    queued = _queued_tasks(stack)
    print(f"after {DISPATCHER_RUNS} dispatcher rounds over {BACKLOG} due deliveries: {queued}")
    assert queued["webhooks.send_delivery"] == 0  # no message per due delivery
    # one wake-up, sent again only once presumed lost (after 60 s, then 120 s...)
    assert 1 <= queued["webhooks.send_due_deliveries"] <= 2, queued
    assert set(queued) <= {
        "webhooks.send_due_deliveries",
        "webhooks.dispatch_due_deliveries",  # beat's, unconsumed (one per beat interval)
        "reports.queue_pending_reports",
        "jobs.expire_stale_jobs",
        "ops.heartbeat",
    }, queued

    stack.start_worker()
    wait_until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == BACKLOG,
        900,
        "the backlog to be delivered",
    )
    ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(ids) == BACKLOG
    assert set(ids.values()) == {1}  # each sent once


HEALTHY = 10
PER_HEALTHY = 20
HANGING = 30


def _insert_deliveries(endpoint: WebhookEndpoint, count: int, prefix: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhooks_webhookdelivery (
                id, endpoint_id, company_id, event_id, events_id, object_id, payload, status,
                attempts, next_attempt_at, dispatched_at, locked_until, next_trigger,
                last_status_code, last_error, delivered_at, created_at, updated_at)
            SELECT gen_random_uuid(), %s, %s, %s || n, 'jobs.create', n::text,
                jsonb_build_object('event', jsonb_build_object(
                    'dt', now(), 'events_id', 'jobs.create', 'object_id', n::text),
                    'data', '{}'::jsonb),
                'pending', 0, clock_timestamp(), NULL, NULL, 'scheduled', NULL, '', NULL,
                clock_timestamp(), clock_timestamp()
            FROM generate_series(1, %s) AS n
            """,
            [str(endpoint.pk), str(endpoint.company_id), f"msg_{prefix}_", count],
        )


@pytest.mark.stack_env(JOBTRAIL_WEBHOOK_TIMEOUT="3")
def test_a_hanging_endpoint_does_not_hold_up_ten_healthy_ones(
    stack: Stack, receiver: Receiver
) -> None:
    """The Procfile's worker (prefork, 2 processes) drains a backlog in which one endpoint's
    receiver never answers (it drips its status line until the 3 s deadline cuts it off) and ten
    healthy endpoints, each on its own receiver, answer at once. The hanging endpoint's
    deliveries are the oldest, so a sender that took them first-come-first-served would give it
    every thread for rounds of 3 s. Healthy deliveries must all be delivered (once each, first
    attempt) while the hanging endpoint still has first attempts in flight and untried."""
    stack.stop_worker()
    receiver.path_replies["/hang"] = Reply(200, "x" * 100, drip=0.5, drip_headers=True)
    company = CompanyFactory(name="Fairness Co")
    hanging = services.endpoint_create(company=company, url=receiver.url + "/hang", events=["*"])
    _insert_deliveries(hanging, HANGING, "hang")
    with contextlib.ExitStack() as exits:
        healthy = [exits.enter_context(running_receiver()) for _ in range(HEALTHY)]
        for n, each in enumerate(healthy):
            endpoint = services.endpoint_create(company=company, url=each.url + "/ok", events=["*"])
            _insert_deliveries(endpoint, PER_HEALTHY, f"ok{n}")

        stack.start_worker(pool=("--concurrency", "2"))  # the Procfile's worker
        wait_until(
            lambda: all(len(each.requests) >= PER_HEALTHY for each in healthy),
            120,
            "every healthy delivery to be received",
        )
        # the moment the last healthy delivery arrived: the hanging endpoint is still hanging
        slow_tried = {r.headers["webhook-id"] for r in receiver.requests}
        slow_in_flight = receiver.in_flight_paths()["/hang"]
        assert slow_in_flight > 0, "the hanging endpoint was not being tried meanwhile"
        assert len(slow_tried) < HANGING, "healthy deliveries waited for the hanging ones"
        for each in healthy:
            ids = Counter(r.headers["webhook-id"] for r in each.requests)
            assert len(ids) == PER_HEALTHY and set(ids.values()) == {1}
        wait_until(
            lambda: (
                WebhookDelivery.objects.filter(
                    status="delivered", endpoint__url__endswith="/ok"
                ).count()
                == HEALTHY * PER_HEALTHY
            ),
            30,
            "the healthy deliveries to be recorded as delivered",
        )
    healthy_attempts = WebhookDelivery.objects.filter(endpoint__url__endswith="/ok")
    assert {d.attempts for d in healthy_attempts} == {1}
    # the hanging receiver never had every thread of the two processes (2 x 8)
    assert max(receiver.max_in_flight.values()) == 1  # one webhook-id at a time
    log = list(receiver.events)
    in_flight, most = 0, 0
    for kind, _, _ in log:
        in_flight += 1 if kind == "start" else -1
        most = max(most, in_flight)
    assert 0 < most < 16
