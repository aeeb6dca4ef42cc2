"""Publish after commit, fall back to the sweep: the one way work is handed to the worker.

The database rows are the truth (the job event log, deliveries, pending reports); a broker
message only says "there is work". So a message is sent after the transaction that wrote the
rows commits (never inside it), at most once per task and arguments per transaction, and a
failed publish is logged, not raised: a beat sweep finds the rows and wakes the worker again.

Wake-ups are coalesced per process (``JOBTRAIL_WAKEUP_WINDOW`` seconds, default 0.02): a
Celery publish costs about 0.6 ms of CPU, more than the rest of a job change's request, and one
message wakes the relay for every event committed before it runs. So the request hands its
wake-up to one background thread of its process, which sends it at once when idle and
otherwise once more at the end of the window for all the wake-ups asked for meanwhile. With the
window at 0 the message is sent by the committing thread itself (the tests' setting).

One outstanding wake-up per task (``ONE_OUTSTANDING``: the relay and the batch sender). A
wake-up only says "there is work", and one message wakes its task for all the work committed
before it runs, so while one is outstanding (published, and no worker has started on it yet)
another is pointless: under load it only fills the broker and makes the workers run empty
rounds. An ``ops.Wakeup`` row per task says since when one is outstanding; the wake-up thread
(never the request) publishes only when none is, and the task clears the row when it starts
(``wakeup_consumed``), before it looks for work, so work committed after that gets a wake-up
of its own. A wake-up the broker lost leaves its row outstanding: the beat sweeps, which look
for work that waited, send it again once it is presumed lost (``resend_lost``).
"""

import logging
import os
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from config.outage import Pause
from config.rows import hot_cursor

logger = logging.getLogger(__name__)

# After a failed publish, skip the broker for a few seconds: requests stay fast during an
# outage (no connection attempt each), and the sweeps publish once the broker is back. One
# pause for the whole process: every publish goes through ``publish``.
BROKER_BACKOFF = 5.0
broker_pause = Pause(BROKER_BACKOFF)


def publish(task_name: str, args: Sequence[Any] = ()) -> bool:
    """Send one message for ``task_name`` now; False (logged) when the broker refuses it, and
    for ``BROKER_BACKOFF`` seconds after that without asking it (the rows wait for a sweep)."""
    if broker_pause.active():
        logger.info("broker presumed down: %s not published; the sweep will wake it", task_name)
        return False
    from config.celery_app import app

    try:
        app.send_task(task_name, args=list(args), retry=False)
    except Exception as exc:
        logger.warning("%s not published (%s); the sweep will wake it", task_name, exc)
        broker_pause.start()
        return False
    return True


def run_again_unless(done: bool, task_name: str) -> str:
    """The end of a run with a time budget (retention, endpoint deletion): with work left,
    queue the next run now, so other tasks get the worker in between (a refused publish
    leaves the rest to the periodic run); the ending of the run's log line."""
    if done:
        return ""
    publish(task_name)
    return "; more are due, queued another run"


# Wake-up tasks that clear their ``ops.Wakeup`` row when they start (``wakeup_consumed``).
# (Each lane's, webhooks/lanes.py: the wide lane's tasks end in ".wide".)
ONE_OUTSTANDING = frozenset(
    {
        "jobs.relay_events",
        "jobs.relay_events.wide",
        "webhooks.send_due_deliveries",
        "webhooks.send_due_deliveries.wide",
    }
)
# An outstanding wake-up is presumed lost (e.g. a broker restart emptied the queue) after this,
# doubled for each further wake-up that nobody answered, up to WAKEUP_LOST_MAX: a stopped
# worker leaves a handful of wake-ups in the broker after hours, not one per sweep.
WAKEUP_LOST_AFTER = timedelta(seconds=60)
WAKEUP_LOST_MAX = timedelta(hours=1)
_MAX_DOUBLINGS = 16  # WAKEUP_LOST_AFTER * 2**16 is far past WAKEUP_LOST_MAX


_WAKEUP_SELECT: tuple[Any, str] | None = None


def _wakeup_row(task_name: str) -> Any:
    """The task's ``ops.Wakeup`` row, or None: one fixed statement (``config.rows.Columns``).

    ``get_or_create`` compiles its queryset on every call (about a million instructions under
    callgrind, once per coalesced wake-up); the row exists after a task's first wake-up.
    """
    global _WAKEUP_SELECT
    if _WAKEUP_SELECT is None:
        from ops.models import Wakeup

        from .rows import Columns

        columns = Columns(Wakeup, "w")
        quote = connection.ops.quote_name
        task_column = Wakeup._meta.get_field("task").column
        _WAKEUP_SELECT = (
            columns,
            f"SELECT {columns.sql} FROM {quote(Wakeup._meta.db_table)} w "
            f"WHERE w.{quote(str(task_column))} = %s",
        )
    columns, sql = _WAKEUP_SELECT
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, [task_name])
        row = cursor.fetchone()
    return None if row is None else columns.instance(row)


def publish_wakeup(task_name: str, *, resend_lost: bool = False) -> bool:
    """Publish a wake-up for ``task_name`` unless one is outstanding; True if published.

    With ``resend_lost`` (the sweeps) an outstanding one that nobody answered in time is
    presumed lost and sent again. Of two processes deciding at once, one publishes (a
    compare-and-set on the row); a refused publish leaves the row as it was.
    """
    from ops.models import Wakeup

    now = timezone.now()
    state = _wakeup_row(task_name)
    if state is None:  # the task's first wake-up ever
        state, _ = Wakeup.objects.get_or_create(task=task_name)
    if state.pending_since is not None:
        # the exponent is capped first: 2**41 minutes overflows a timedelta (~36 h unanswered)
        doublings = min(max(state.unanswered - 1, 0), _MAX_DOUBLINGS)
        wait = min(WAKEUP_LOST_AFTER * 2**doublings, WAKEUP_LOST_MAX)
        if not resend_lost or state.pending_since > now - wait:
            return False
    won = Wakeup.objects.filter(
        task=task_name, pending_since=state.pending_since, unanswered=state.unanswered
    ).update(pending_since=now, unanswered=F("unanswered") + 1)
    if not won:
        return False
    if publish(task_name):
        return True
    Wakeup.objects.filter(task=task_name, pending_since=now).update(
        pending_since=state.pending_since, unanswered=state.unanswered
    )
    return False


def wakeup_consumed(task_name: str) -> None:
    """A worker started on ``task_name``'s wake-up: none is outstanding any more (call it
    before looking for work)."""
    from ops.models import Wakeup

    Wakeup.objects.filter(task=task_name).update(pending_since=None, unanswered=0)


def wakeups_reset() -> int:
    """A worker came up: forget the outstanding wake-ups (how many were). Any of them may have
    been lost with the broker's messages or with the worker that had fetched them, and the
    sweeps wait longer to resend one the longer nobody answered (up to ``WAKEUP_LOST_MAX``):
    after an hour's outage that was an hour more. Now the next job change or sweep sends one
    at once; one more wake-up than needed costs a worker an empty look."""
    from ops.models import Wakeup

    return Wakeup.objects.filter(pending_since__isnull=False).update(
        pending_since=None, unanswered=0
    )


def _publish_from_thread(task_name: str, args: tuple[Any, ...]) -> None:
    if args or task_name not in ONE_OUTSTANDING:
        publish(task_name, args)
        return
    try:
        publish_wakeup(task_name)
    except Exception:
        # the database is away: a duplicate wake-up is harmless, a missing one costs a sweep
        logger.warning("wake-up row of %s unreadable; publishing anyway", task_name, exc_info=True)
        connection.close()  # this thread's; a new one is opened next time
        publish(task_name)


Key = tuple[str, tuple[Any, ...]]


class Waker:
    """One thread per process that publishes the wake-ups asked for, at most once per window.

    ``request`` never blocks on the broker. The first wake-up after a quiet spell is sent at
    once; those asked for while a message is being sent or within ``window`` seconds after it
    are sent together (each distinct message once) when the window ends, and a wake-up task
    with one outstanding already is not sent again (``publish_wakeup``). A process that exits
    with wake-ups unsent leaves them to the beat sweeps, as a failed publish does.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[Key, None] = {}  # an ordered set
        self._thread: threading.Thread | None = None
        self._stopping = False

    def stop(self) -> None:
        """Send what was asked for, then end the thread and close its database connection
        (tests; a process that exits just leaves the rest to the sweeps)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(10)

    def request(self, key: Key) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobtrail-wakeups", daemon=True
                )
                self._thread.start()
            self._pending[key] = None
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:  # stopping, nothing left to send
                    connection.close()
                    return
                keys = list(self._pending)
                self._pending.clear()
            for task_name, args in keys:
                _publish_from_thread(task_name, args)
            with self._cond:  # the window (cut short by stop: what waits is sent at once)
                self._cond.wait_for(lambda: self._stopping, timeout=self.window)


_waker: Waker | None = None
_waker_lock = threading.Lock()


def _forget_waker() -> None:  # a forked child starts its own thread (and lock) when needed
    global _waker, _waker_lock
    _waker = None
    _waker_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_waker)


def stop_waker() -> None:
    """Send this process's pending wake-ups and end its wake-up thread, closing that thread's
    database connection; the next ``wake`` starts a new thread.

    For a process about to drop or replace its database (the bench between runs), whose
    thread would otherwise keep a connection to the old one.
    """
    global _waker
    with _waker_lock:
        waker, _waker = _waker, None
    if waker is not None:
        waker.stop()


def wake(task_name: str, args: Sequence[Any] = ()) -> None:
    """Publish ``task_name`` soon, coalesced with the same wake-ups of this process."""
    global _waker
    window = float(getattr(settings, "JOBTRAIL_WAKEUP_WINDOW", 0))
    if window <= 0:
        publish(task_name, args)
        return
    with _waker_lock:
        if _waker is None:
            _waker = Waker(window)
        waker = _waker
    waker.request((task_name, tuple(args)))


class _Publish:
    """An on-commit callback that knows what it publishes (so a second request can find it)."""

    def __init__(self, task_name: str, args: tuple[Any, ...]) -> None:
        self.key = (task_name, args)

    def __call__(self) -> None:
        wake(*self.key)


def publish_on_commit(
    task_name: str, args: Sequence[Any] = (), *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Publish ``task_name`` once the current transaction commits; once per transaction.

    Nothing is sent if the transaction rolls back. Outside a transaction it is sent at once.
    """
    key = (task_name, tuple(args))
    connection = connections[using]
    if connection.in_atomic_block:
        # Django drops the callbacks of a rolled-back savepoint from this list, so a callback
        # found here will run: a second one for the same message would be a duplicate.
        for entry in connection.run_on_commit:  # (savepoint ids, callback, robust)
            callback = entry[1]
            if isinstance(callback, _Publish) and callback.key == key:
                return
    transaction.on_commit(_Publish(*key), using=using, robust=True)
