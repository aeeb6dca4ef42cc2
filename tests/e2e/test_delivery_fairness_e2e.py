"""The delivery engine's per-endpoint fairness: the Procfile's prefork worker, one receiver that
never answers and ten healthy ones (gunicorn, worker and beat on a private Redis)."""

import contextlib
from collections import Counter

import pytest
from django.db import connection

from tests.e2e.stack import Stack, wait_until
from tests.factories import CompanyFactory
from tests.receiver import Receiver, Reply, running_receiver
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


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
