"""Living with an unreachable service: the two helpers every caller uses.

``Outage``: waiting out an unreachable database in a loop that must not end. The webhook sender
round's coordinator and feeder (``webhooks.sending``) and beat (``ops.scheduler``) keep running
while PostgreSQL is away: each failed try drops the broken connection (the next try opens a
new one) and waits longer before the next, and the outage is logged once when it starts and
once when it ends, not every few seconds.

``Pause``: not asking a service that just failed again for a few seconds, where a request or a
caller must not wait for it (the broker for a publish, ``config.outbox``; the rate limits'
cache, ``jobs.auth``): requests stay fast during an outage, and the work waits where it is
kept (rows a sweep finds; a rate limit not applied meanwhile).
"""

import logging
import time

from django.db import InterfaceError, OperationalError, connection

# The database cannot be reached (not a bug, a refused statement or a missing migration: those
# are raised as they are).
DATABASE_ERRORS = (OperationalError, InterfaceError)


def first_line(exc: BaseException) -> str:
    """The first line of a driver's error (psycopg's run over several), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Outage:
    """One loop's view of a database outage.

    ``failed(exc)`` after a try that could not reach the database: logs ``down`` (with the
    error) if this starts an outage, closes the connection and answers how long to wait before
    the next try (``first``, then doubling up to ``most``). ``ok()`` after a try that reached it:
    logs ``back`` if an outage ends.
    """

    def __init__(
        self, logger: logging.Logger, *, down: str, back: str, first: float, most: float
    ) -> None:
        self.logger = logger
        self.down_message = down
        self.back_message = back
        self.first = first
        self.most = most
        self.wait = 0.0

    @property
    def down(self) -> bool:
        return self.wait > 0

    def failed(self, exc: BaseException) -> float:
        if not self.down:
            self.logger.warning(self.down_message, first_line(exc))
        connection.close()  # a new connection for the next try
        self.wait = min(max(self.wait * 2, self.first), self.most)
        return self.wait

    def ok(self) -> None:
        if self.down:
            self.logger.warning(self.back_message)
        self.wait = 0.0


class Pause:
    """A process-wide "do not ask for ``seconds`` after a failure" (one per service).

    ``start()`` after a failure; ``active()`` while it lasts (the caller skips the service, so
    it meets, and logs, at most one failure per pause). Unlocked on purpose: two threads
    failing at once both start it, to the same end.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until = 0.0

    def active(self) -> bool:
        return time.monotonic() < self._until

    def start(self) -> None:
        self._until = time.monotonic() + self.seconds

    def end(self) -> None:
        """Ask again at once (the tests, or a caller that knows the service is back)."""
        self._until = 0.0
