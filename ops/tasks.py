"""The workers' heartbeats: beat queues them every few seconds, a worker records that one ran
(the ``worker``'s on the default queue, the ``wide`` worker's on the wide lane's)."""

import socket
from typing import Any

from celery import shared_task
from django.conf import settings

from .services import WIDE, WIDE_HEARTBEAT_TASK, WORKER, heartbeat_record


@shared_task(
    name="ops.heartbeat",
    bind=True,
    ignore_result=True,
    # A heartbeat that waited in the queue longer than the freshness limit says nothing new:
    # drop it instead of letting a recovered worker run the whole backlog.
    expires=settings.JOBTRAIL_OPS_HEARTBEAT_MAX_AGE,
)
def heartbeat(self: Any) -> None:
    """Record that a worker is taking tasks off the queue now."""
    heartbeat_record(name=WORKER, hostname=self.request.hostname or socket.gethostname())


@shared_task(
    name=WIDE_HEARTBEAT_TASK,  # routed to the wide lane's queue (CELERY_TASK_ROUTES)
    bind=True,
    ignore_result=True,
    expires=settings.JOBTRAIL_OPS_HEARTBEAT_MAX_AGE,
)
def wide_heartbeat(self: Any) -> None:
    """Record that the wide lane's worker (``webhooks.lanes``) is taking tasks off its queue."""
    heartbeat_record(name=WIDE, hostname=self.request.hostname or socket.gethostname())
