"""Celery beat's scheduler: django-celery-beat's database scheduler, a heartbeat, and sweeps.

django-celery-beat writes ``last_run_at`` only when it syncs (every few minutes), too late to
tell a dead beat within a minute; this scheduler records its own heartbeat every
``JOBTRAIL_HEARTBEAT_INTERVAL`` seconds from beat's loop.

The sweeps (``config.periodic.BEAT_SWEEPS``: the webhook dispatcher and the relay sweep) run
here, in beat, instead of being published for a worker: a sweep only looks for lost work and
sends at most one wake-up, so while no worker consumes, the broker does not fill with one sweep
message per round (60 in five minutes at the dispatcher's 5 s), and the wake-up still goes out.
Their schedule stays in the database like every periodic task's (staff can pause or re-time
them in the admin). Beat logs a sweep only when it fails (or, at DEBUG, each run): its
"Sending due task" line every few seconds said nothing, since nothing is sent; a sweep that
wakes a worker says so itself.

Select it with ``CELERY_BEAT_SCHEDULER`` (the default in settings).
"""

import logging
import socket
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django_celery_beat.schedulers import DatabaseScheduler
from kombu.utils.imports import symbol_by_name

from config.periodic import BEAT_SWEEPS

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

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if entry.task not in BEAT_SWEEPS:
            super().apply_entry(entry, producer=producer)
            return
        try:  # as Celery's, without its "Sending due task" line: the sweep runs here
            self.apply_async(entry, producer=producer, advance=False)
        except Exception:
            logger.exception("%s failed in beat", entry.task)

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if entry.task not in BEAT_SWEEPS:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        task = symbol_by_name(BEAT_SWEEPS[entry.task])
        entry = self.reserve(entry) if advance else entry
        try:
            close_old_connections()
            # runs the task here; an error is logged by Celery's tracer and kept in the result
            result = task.apply(entry.args, entry.kwargs)
            if result.successful():
                logger.debug("ran %s in beat", entry.task)
            else:
                logger.warning("%s failed in beat: %s", entry.task, result.result)
            return result
        finally:
            self._tasks_since_sync += 1
            if self.should_sync():
                self._do_sync()

    def record_heartbeat(self) -> None:
        """Write beat's heartbeat; a database outage is logged, never stops the schedule."""
        try:
            close_old_connections()
            heartbeat_record(name=BEAT, hostname=socket.gethostname())
        except Exception:
            logger.warning("beat heartbeat not recorded", exc_info=True)
            connection.close()
