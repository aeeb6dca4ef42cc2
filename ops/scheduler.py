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

A database outage never stops beat: django-celery-beat re-reads the schedule from the database
every five minutes (and at start) and lets a database error end the process. Here the last
schedule read is kept and the read retried every ``DATABASE_RETRY`` seconds, so beat carries on
by itself once PostgreSQL is back.

Select it with ``CELERY_BEAT_SCHEDULER`` (the default in settings).
"""

import logging
import socket
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django_celery_beat.schedulers import DatabaseScheduler
from kombu.utils.imports import symbol_by_name

from config.outage import DATABASE_ERRORS, Outage, first_line
from config.periodic import BEAT_SWEEPS
from webhooks import lanes

from .services import BEAT, WIDE_HEARTBEAT_TASK, heartbeat_record

logger = logging.getLogger(__name__)
celery_logger = logging.getLogger("celery.beat")  # where Celery's "Sending due task" goes


# Seconds between two tries to read the schedule while the database is unavailable.
DATABASE_RETRY = 5.0


class HeartbeatScheduler(DatabaseScheduler):
    _heartbeat_due = 0.0
    _send_failing = False  # a send to the broker failed and none succeeded since

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before the package's __init__: it reads the schedule (``setup_schedule``)
        self._outage = Outage(
            logger,
            down="beat cannot read its schedule, the database is unavailable (%s); keeping "
            f"the last schedule read and trying again every {DATABASE_RETRY:.0f} s",
            back="beat reads its schedule again: the database is back",
            first=DATABASE_RETRY,
            most=DATABASE_RETRY,
        )
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """The first read of the schedule, retried until the database answers (beat started
        before PostgreSQL, or during an outage, waits for it instead of exiting)."""
        while True:
            try:
                super().setup_schedule()
            except DATABASE_ERRORS as exc:
                wait = self._outage.failed(exc)
                self._initial_read = True  # read the whole schedule on the next try
                time.sleep(wait)
            else:
                self._outage.ok()
                return

    def schedule_changed(self) -> bool:
        """The package's check, which logs a database error with its traceback; during an
        outage beat says so once (``config.outage.Outage``) and retries quietly."""
        if not self._outage.down:
            return bool(super().schedule_changed())
        return False  # the next tick re-reads the whole schedule anyway

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            interval: float = super().tick(*args, **kwargs)
        except DATABASE_ERRORS as exc:  # the schedule's re-read: the last one read is kept
            wait = self._outage.failed(exc)
            # read it again on the next tick (the package compares it with its naive now())
            self._last_full_sync = datetime.min  # noqa: DTZ901
            return wait
        self._outage.ok()
        every = float(settings.JOBTRAIL_HEARTBEAT_INTERVAL)
        if time.monotonic() >= self._heartbeat_due:
            self.record_heartbeat()
            self._heartbeat_due = time.monotonic() + every
        return min(interval, every)

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if entry.task == WIDE_HEARTBEAT_TASK and not self._wide_lane_needed():
            # nobody may consume the wide lane's queue (JOBTRAIL_WIDE_LANE off, or no `wide`
            # worker deployed while no company is wide): its heartbeats would pile up there
            logger.debug("%s not sent: no company needs the wide lane", entry.task)
            return
        if entry.task not in BEAT_SWEEPS:
            self._send_entry(entry, producer)
            return
        try:  # as Celery's, without its "Sending due task" line: the sweep runs here
            self.apply_async(entry, producer=producer, advance=False)
        except Exception:
            logger.exception("%s failed in beat", entry.task)

    def _send_entry(self, entry: Any, producer: Any) -> None:
        """Celery's ``apply_entry`` for a task published to the broker, saying a failure once:
        Celery logged each failed send with two tracebacks, so a broker outage filled beat's log
        (about a hundred in half a minute, every due task every second). The first failure is
        logged with its traceback, the others at DEBUG until a send succeeds again. A task not
        sent runs on its next turn."""
        celery_logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            if self._send_failing:
                logger.debug("%s not sent either (%s)", entry.task, first_line(exc))
                return
            self._send_failing = True
            logger.warning(
                "beat cannot send its due tasks (%s): each runs on its next turn once sending "
                "works again; further failures are logged at DEBUG",
                first_line(exc),
                exc_info=True,
            )
            return
        if self._send_failing:
            self._send_failing = False
            logger.warning("beat sends its due tasks again (%s was sent)", entry.task)

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if entry.task not in BEAT_SWEEPS:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        task = symbol_by_name(BEAT_SWEEPS[entry.task])
        entry = self.reserve(entry) if advance else entry
        try:
            close_old_connections()
            # the task's body, here: Task.apply() would trace it, and Celery's tracer logs every
            # run at INFO ("Task ... succeeded in ...": two lines every 5 s, for ever)
            try:
                result = task.run(*entry.args, **entry.kwargs)
            except Exception:
                logger.exception("%s failed in beat", entry.task)
                return None
            logger.debug("ran %s in beat", entry.task)
            return result
        finally:
            self._tasks_since_sync += 1
            if self.should_sync():
                self._do_sync()

    def _wide_lane_needed(self) -> bool:
        try:
            close_old_connections()
            return lanes.wide_lane_needed()
        except Exception:  # the database is away: a heartbeat too many is harmless
            logger.warning("beat cannot tell whether the wide lane is needed", exc_info=True)
            connection.close()
            return True

    def record_heartbeat(self) -> None:
        """Write beat's heartbeat; a database outage is logged, never stops the schedule."""
        try:
            close_old_connections()
            heartbeat_record(name=BEAT, hostname=socket.gethostname())
        except Exception:
            logger.warning("beat heartbeat not recorded", exc_info=True)
            connection.close()
