"""Celery beat's scheduler: django-celery-beat's database scheduler plus a heartbeat.

django-celery-beat writes ``last_run_at`` only when it syncs (every few minutes), too late to
tell a dead beat within a minute; this scheduler records its own heartbeat every
``JOBTRAIL_HEARTBEAT_INTERVAL`` seconds from beat's loop. Select it with
``CELERY_BEAT_SCHEDULER`` (the default in settings).
"""

import logging
import socket
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django_celery_beat.schedulers import DatabaseScheduler

from .services import BEAT, heartbeat_record

logger = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):
    _heartbeat_due = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval: float = super().tick(*args, **kwargs)
        every = float(settings.JOBTRAIL_HEARTBEAT_INTERVAL)
        if time.monotonic() >= self._heartbeat_due:
            self.record_heartbeat()
            self._heartbeat_due = time.monotonic() + every
        return min(interval, every)

    def record_heartbeat(self) -> None:
        """Write beat's heartbeat; a database outage is logged, never stops the schedule."""
        try:
            close_old_connections()
            heartbeat_record(name=BEAT, hostname=socket.gethostname())
        except Exception:
            logger.warning("beat heartbeat not recorded", exc_info=True)
            connection.close()
