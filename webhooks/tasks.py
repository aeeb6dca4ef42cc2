"""Celery tasks: thin wrappers over ``sending`` and ``services``.

The webhook tasks' time limits come from the send deadline (see ``config/settings.py``).
"""

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from config import outbox

from . import lanes, sending, services

logger = logging.getLogger(__name__)

SEND_SOFT_LIMIT, SEND_HARD_LIMIT = settings.JOBTRAIL_WEBHOOK_SEND_TIME_LIMITS
ROUND_SOFT_LIMIT, ROUND_HARD_LIMIT = settings.JOBTRAIL_WEBHOOK_ROUND_TIME_LIMITS


@shared_task(
    name="webhooks.send_delivery",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=SEND_SOFT_LIMIT,
    time_limit=SEND_HARD_LIMIT,
)
def send_delivery(delivery_id: str) -> None:
    """Make one attempt at a delivery (a no-op when it is not due or already taken)."""
    sending.deliver(delivery_id)


@shared_task(
    name="webhooks.send_due_deliveries",
    # a lost or unfinished wake-up is replaced by the dispatcher; never redeliver it
    acks_late=False,
    ignore_result=True,
    soft_time_limit=ROUND_SOFT_LIMIT,
    time_limit=ROUND_HARD_LIMIT,
)
def send_due_deliveries() -> int:
    """Send due deliveries in batches for a while (woken by the dispatcher and the relay)."""
    return _send_lane(lanes.NARROW)


@shared_task(
    name=lanes.task(services.SENDER_TASK, lanes.WIDE),
    acks_late=False,
    ignore_result=True,
    soft_time_limit=ROUND_SOFT_LIMIT,
    time_limit=ROUND_HARD_LIMIT,
)
def send_wide_due_deliveries() -> int:
    """The same for the companies that fan out wide (``webhooks.lanes``: the `wide` worker)."""
    return _send_lane(lanes.WIDE)


def _send_lane(lane: str) -> int:
    services.wakeup_received(lane)
    count = sending.send_due(budget=settings.JOBTRAIL_WEBHOOK_ROUND_SECONDS, lane=lane)
    if count:
        logger.info("sent %d due webhook deliveries (%s lane)", count, lane)
    return count


@shared_task(name="webhooks.dispatch_due_deliveries", ignore_result=True)
def dispatch_due_deliveries() -> int:
    """Wake the batch sender when due deliveries have no message on their way."""
    woken = services.dispatch_due_deliveries()
    if woken:
        logger.info("woke the webhook sender for due deliveries")
    return woken


@shared_task(name=services.DELETE_ENDPOINTS_TASK, ignore_result=True)
def delete_endpoints() -> None:
    """Delete the deliveries of endpoints the API deleted, then the endpoints (published by
    each DELETE; a run that used its budget queues the next)."""
    deadline = time.monotonic() + settings.JOBTRAIL_PURGE_BUDGET
    deleted = services.endpoints_delete_pending(deadline=deadline)
    more = outbox.run_again_unless(deleted.done, services.DELETE_ENDPOINTS_TASK)
    logger.info(
        "deleted %d webhook endpoints and %d of their deliveries%s",
        deleted.endpoints,
        deleted.deliveries,
        more,
    )


@shared_task(name="webhooks.purge_old_deliveries", ignore_result=True)
def purge_old_deliveries() -> None:
    """Retention (hourly); a backlog bigger than one run's budget is worked off by runs
    queued one after the other, so other tasks get the worker in between."""
    failed_days = settings.JOBTRAIL_WEBHOOK_FAILED_RETENTION_DAYS
    purged = services.deliveries_purge(
        older_than=timedelta(days=settings.JOBTRAIL_WEBHOOK_RETENTION_DAYS),
        failed_older_than=timedelta(days=failed_days) if failed_days > 0 else None,
        budget=settings.JOBTRAIL_PURGE_BUDGET,
    )
    more = outbox.run_again_unless(purged.done, "webhooks.purge_old_deliveries")
    logger.info(
        "purged %d webhook attempts and %d deliveries%s", purged.attempts, purged.deliveries, more
    )
