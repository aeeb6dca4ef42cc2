"""Celery tasks of the jobs app: thin wrappers over library calls."""

import logging

from celery import shared_task

from .idempotency import idempotency_keys_purge
from .services import jobs_expire_stale

logger = logging.getLogger(__name__)


@shared_task(name="jobs.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d idempotency keys", deleted)
    return deleted


@shared_task(name="jobs.expire_stale_jobs", ignore_result=True)
def expire_stale_jobs() -> int:
    """Fail active jobs that stopped reporting (``job_expired``)."""
    expired = jobs_expire_stale()
    if expired:
        logger.info("expired %d stale jobs", expired)
    return expired
