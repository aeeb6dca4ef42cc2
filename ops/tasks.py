"""The worker's heartbeat: beat queues it every few seconds, a worker records that it ran."""

import socket
from typing import Any

from celery import shared_task
from django.conf import settings

from .services import heartbeat_record


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
    heartbeat_record(name="worker", hostname=self.request.hostname or socket.gethostname())
