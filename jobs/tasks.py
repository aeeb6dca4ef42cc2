"""Celery tasks of the jobs app: thin wrappers over library calls."""

import logging

from celery import shared_task
from django.conf import settings

from config import outbox
from config.outbox import wakeup_consumed
from webhooks import lanes

from . import relay
from .idempotency import idempotency_keys_purge
from .services import RELAY_TASK, jobs_expire_stale

logger = logging.getLogger(__name__)


@shared_task(name="jobs.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    """Hourly; a backlog bigger than one run's budget is worked off by runs queued one after
    the other."""
    purged = idempotency_keys_purge(budget=settings.JOBTRAIL_PURGE_BUDGET)
    more = outbox.run_again_unless(purged.done, "jobs.purge_idempotency_keys")
    logger.info("purged %d idempotency keys%s", purged.rows, more)
    return purged.rows


@shared_task(name="jobs.expire_stale_jobs", ignore_result=True)
def expire_stale_jobs() -> int:
    """Fail active jobs that stopped reporting (``job_expired``)."""
    expired = jobs_expire_stale()
    if expired:
        logger.info("expired %d stale jobs", expired)
    return expired


@shared_task(
    name="jobs.relay_events",
    # a wake-up: one lost with a killed worker is replaced by the sweep, never redelivered
    acks_late=False,
    ignore_result=True,
)
def relay_events() -> int:
    """Turn new job events into webhook deliveries and report builds (``jobs.relay``)."""
    return _relay_lane(lanes.NARROW)


@shared_task(name=lanes.task(RELAY_TASK, lanes.WIDE), acks_late=False, ignore_result=True)
def relay_wide_events() -> int:
    """The same for the companies that fan out wide (``webhooks.lanes``: the `wide` worker)."""
    return _relay_lane(lanes.WIDE)


def _relay_lane(lane: str) -> int:
    wakeup_consumed(lanes.task(RELAY_TASK, lane))  # before looking: what commits from now on
    relayed = relay.events_relay(lane=lane)  # wakes it again
    if relayed:
        logger.info("relayed %d job events (%s lane)", relayed, lane)
    return relayed


@shared_task(name="jobs.sweep_unrelayed_events", ignore_result=True)
def sweep_unrelayed_events() -> bool:
    """Wake the relay when an event waits whose wake-up was lost."""
    woken = relay.relay_sweep()
    if woken:
        logger.info("woke the relay for waiting job events")
    return woken
