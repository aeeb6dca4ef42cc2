"""Retention: old delivered deliveries and old attempts are deleted a batch per transaction."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import sql
from tests.factories import JobFactory
from tests.receiver import Receiver
from tests.webhooks.helpers import deliveries
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from webhooks.sending import deliver
from webhooks.tasks import purge_old_deliveries

OLD = timedelta(days=40)


def _old_delivered(company: Any, count: int) -> list[WebhookDelivery]:
    """``count`` deliveries delivered 40 days ago, each with one attempt."""
    services.endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    for _ in range(count):
        JobFactory(company=company)
    rows = deliveries()
    then = timezone.now() - OLD
    WebhookDelivery.objects.update(status=DeliveryStatus.DELIVERED, created_at=then)
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(delivery=d, number=1, started_at=then, status_code=204) for d in rows
    )
    return rows


def test_purge_keeps_recent_and_undelivered(company: Any, receiver: Receiver) -> None:
    services.endpoint_create(company=company, url=receiver.url, events=["*"])
    for _ in range(3):
        JobFactory(company=company)
    old_delivered, old_failed, recent = deliveries()
    for d in (old_delivered, recent):
        deliver(d.pk)
    old = timezone.now() - OLD
    WebhookDelivery.objects.filter(pk__in=[old_delivered.pk, old_failed.pk]).update(created_at=old)
    WebhookDelivery.objects.filter(pk=old_failed.pk).update(status="failed")
    WebhookAttempt.objects.filter(delivery=old_delivered).update(started_at=old)
    failed_attempt = WebhookAttempt.objects.create(
        delivery=old_failed, number=1, started_at=old, status_code=500
    )

    purged = services.deliveries_purge(older_than=timedelta(days=30), budget=60)

    assert purged == (2, 1, True)  # the delivered one's attempt and the failed one's old attempt
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {old_failed.pk, recent.pk}
    assert not WebhookAttempt.objects.filter(pk=failed_attempt.pk).exists()
    assert WebhookAttempt.objects.filter(delivery=recent).count() == 1


def test_a_backlog_is_deleted_a_batch_per_transaction(company: Any) -> None:
    _old_delivered(company, 5)
    cutoff = timezone.now() - timedelta(days=30)

    with CaptureQueriesContext(connection) as queries:
        deleted = sql.delete_oldest(
            WebhookDelivery.objects.filter(created_at__lt=cutoff),
            order_by="created_at",
            deadline=float("inf"),
            dependents=[(WebhookAttempt, "delivery")],
            size=2,
        )

    assert deleted == (5, 5, True)
    assert not WebhookDelivery.objects.exists() and not WebhookAttempt.objects.exists()
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 3  # 2 + 2 + 1 rows, each batch in its own transaction
    assert all("LIMIT 2" in s for s in selects)


def test_a_run_whose_budget_ran_out_queues_the_next(
    company: Any, one_batch_per_run: list[str]
) -> None:
    published = one_batch_per_run
    _old_delivered(company, 3)
    published.clear()  # what the job creations woke

    purge_old_deliveries()
    assert WebhookDelivery.objects.count() == 1
    assert published == ["webhooks.purge_old_deliveries"]

    purge_old_deliveries()  # the queued run
    assert not WebhookDelivery.objects.exists() and not WebhookAttempt.objects.exists()
    assert published == ["webhooks.purge_old_deliveries"]  # done: nothing more queued


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_delivery_another_transaction_holds_is_left_for_a_later_run(company: Any) -> None:
    held = _old_delivered(company, 3)[0]
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # a redelivery of it, say, in progress
        try:
            with transaction.atomic():
                WebhookDelivery.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        purged = services.deliveries_purge(older_than=timedelta(days=30), budget=60)
    finally:
        release.set()
        holder.join()

    # not waiting for the held one; its attempt is old too, and goes with the old attempts
    assert purged == (3, 2, True)
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [held.pk]
    assert services.deliveries_purge(older_than=timedelta(days=30), budget=60) == (0, 1, True)


def test_each_batch_starts_where_the_last_one_ended(company: Any) -> None:
    """Old failed deliveries are kept: a batch reading from the oldest row again would pass
    over all of them each time (28 ms a batch with 500,000 of them, growing with them)."""
    rows = _old_delivered(company, 5)
    then = timezone.now() - OLD
    for n, row in enumerate(rows):  # one a minute, the two oldest failed
        status = DeliveryStatus.FAILED if n < 2 else DeliveryStatus.DELIVERED
        WebhookDelivery.objects.filter(pk=row.pk).update(
            created_at=then + timedelta(minutes=n), status=status
        )
    cutoff = timezone.now() - timedelta(days=30)

    with CaptureQueriesContext(connection) as queries:
        deleted = sql.delete_oldest(
            WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED, created_at__lt=cutoff),
            order_by="created_at",
            deadline=float("inf"),
            dependents=[(WebhookAttempt, "delivery")],
            size=2,
        )

    assert deleted.rows == 3
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {rows[0].pk, rows[1].pk}
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 2
    assert ">=" not in selects[0] and '"created_at" >=' in selects[1]


def test_a_nullable_order_is_read_from_the_start_each_batch(company: Any) -> None:
    """Rows whose order field is NULL sort apart (first on SQLite, last on PostgreSQL) and
    match no ``>=``: resuming would leave them, or fail on ``>= None``."""
    rows = _old_delivered(company, 5)
    WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows[:3]]).update(delivered_at=None)

    deleted = sql.delete_oldest(
        WebhookDelivery.objects.all(),
        order_by="delivered_at",
        deadline=float("inf"),
        dependents=[(WebhookAttempt, "delivery")],
        size=2,
    )

    assert deleted == (5, 5, True)
    assert not WebhookDelivery.objects.exists()


def test_failed_deliveries_are_kept_longer_and_then_purged(
    company: Any, settings: Any, published: list[str]
) -> None:
    """Failed deliveries stay past the retention, to be redelivered, but not for ever
    (JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS, 90; 0 keeps them)."""
    rows = _old_delivered(company, 3)
    now = timezone.now()
    for row, days in zip(rows, (100, 40, 100), strict=True):
        WebhookDelivery.objects.filter(pk=row.pk).update(
            status=DeliveryStatus.FAILED, created_at=now - timedelta(days=days)
        )
    WebhookDelivery.objects.filter(pk=rows[2].pk).update(status=DeliveryStatus.PENDING)

    settings.JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS = 0
    purge_old_deliveries()
    assert WebhookDelivery.objects.count() == 3  # kept (their 40-day-old attempts are not)

    settings.JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS = 90
    purge_old_deliveries()
    kept = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert kept == {rows[1].pk, rows[2].pk}  # the failed one 40 days old, the pending one
