"""Celery tasks of the jobs app: thin wrappers over library calls."""

import logging

from celery import shared_task

from .idempotency import idempotency_keys_purge

logger = logging.getLogger(__name__)


@shared_task(name="jobs.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    deleted = idempotency_keys_purge()
    logger.info("purged %d idempotency keys", deleted)
    return deleted
