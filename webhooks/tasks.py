"""Celery tasks: thin wrappers over ``sending`` and ``services``."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from . import sending, services

logger = logging.getLogger(__name__)


@shared_task(name="webhooks.send_delivery", acks_late=True, ignore_result=True)
def send_delivery(delivery_id: str) -> None:
    """Make one attempt at a delivery (a no-op when it is not due or already taken)."""
    sending.deliver(delivery_id)


@shared_task(name="webhooks.dispatch_due_deliveries", ignore_result=True)
def dispatch_due_deliveries() -> int:
    """Queue every due delivery that no send task picked up (e.g. lost by the broker)."""
    count = services.dispatch_due_deliveries()
    if count:
        logger.info("dispatched %d due webhook deliveries", count)
    return count


@shared_task(name="webhooks.purge_old_deliveries", ignore_result=True)
def purge_old_deliveries() -> None:
    attempts, deliveries = services.deliveries_purge(
        older_than=timedelta(days=settings.JOBTRAIL_WEBHOOK_RETENTION_DAYS)
    )
    logger.info("purged %d webhook attempts and %d delivered deliveries", attempts, deliveries)
