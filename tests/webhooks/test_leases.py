"""config/leases.py on webhook deliveries: one-statement claims, fencing, release; and the batch
sender's query budget (a batch costs a few queries, not a few per delivery)."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import leases
from tests.factories import CompanyFactory, JobFactory
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


def _due(count: int, url: str = "http://127.0.0.1:9/") -> list[WebhookDelivery]:
    company = CompanyFactory()
    endpoint_for(company, url, ["jobs.create"])
    for _ in range(count):
        JobFactory(company=company)
    return deliveries()


def test_a_claim_is_one_statement_and_returns_the_rows_with_their_endpoint() -> None:
    rows = _due(5)
    with CaptureQueriesContext(connection) as queries:
        claims = services.deliveries_claim_due(limit=3)
        payloads = [c.delivery.payload for c in claims]
        urls = {c.endpoint.url for c in claims}
    assert len(claims) == 3 and all(payloads) and urls == {"http://127.0.0.1:9/"}
    # the claim itself (UPDATE ... RETURNING) and the endpoints: nothing per row
    assert len(queries) == 2, [q["sql"][:80] for q in queries]
    assert "RETURNING" in queries[0]["sql"]
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
