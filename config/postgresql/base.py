"""Django's PostgreSQL backend, with the connection health check of a busy connection skipped.

With persistent connections (``CONN_MAX_AGE``) Django's ``CONN_HEALTH_CHECKS`` sends a
``SELECT 1`` before the first query of every request: one more round trip on every request,
a third of a poll's. PgBouncer's answer is ``server_check_delay``: a connection released in
good health a moment ago is reused without a check. Here the check runs when the connection has
been idle for ``JOBTRAIL_DB_HEALTH_CHECK_AFTER`` seconds (default 1) or was never checked; a
connection that broke within that second (a database restart) fails its request, which is
answered 503 with ``Retry-After`` (``config/problems.py``), and Django drops it at the end of
that request, as it drops any connection that raised a database error.
"""

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _released_healthy_at: float | None = None

    def close_if_health_check_failed(self) -> None:
        enabled = getattr(self, "health_check_enabled", False)  # set by Django at connect
        if self.connection is not None and enabled and not getattr(self, "health_check_done", True):
            released = self._released_healthy_at
            delay = float(getattr(settings, "JOBTRAIL_DB_HEALTH_CHECK_AFTER", 1.0))
            if released is not None and time.monotonic() - released < delay:
                self.health_check_done = True
                return
        super().close_if_health_check_failed()

    def close_if_unusable_or_obsolete(self) -> None:
        super().close_if_unusable_or_obsolete()
        # kept, at the end of a request with no database error: healthy as of now
        if self.connection is not None and not self.errors_occurred:
            self._released_healthy_at = time.monotonic()
        else:
            self._released_healthy_at = None

    def close(self) -> None:
        self._released_healthy_at = None
        super().close()
