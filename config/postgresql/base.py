"""Django's PostgreSQL backend, with the connection health check of a busy connection skipped.

With persistent connections (``CONN_MAX_AGE``) Django's ``CONN_HEALTH_CHECKS`` sends a
``SELECT 1`` before the first query of every request: one more round trip on every request,
a third of a poll's. PgBouncer's answer is ``server_check_delay``: a connection released in
good health a moment ago is reused without a check. Here the check runs when the connection has
been idle (no query) for ``JOBTRAIL_DB_HEALTH_CHECK_AFTER`` seconds (default 1) or was never
checked; a connection that broke within that second (a database restart) fails its request, which is
answered 503 with ``Retry-After`` (``config/problems.py``), and Django drops it at the end of
that request, as it drops any connection that raised a database error.
"""

import time
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base, operations
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: Any, params: Any) -> Any:
        """What query logging shows (DEBUG, the tests' query capture): a hot cursor's statement
        with its values, as for Django's own (client-side binding) cursors."""
        if isinstance(cursor, base.ServerBindingCursor) and sql is not None:
            try:
                return self.compose_sql(sql, params)
            except Exception:  # a value the client cannot render: the statement as sent
                return sql
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    _released_healthy_at: float | None = None
    # A cursor was opened since the connection was last found healthy. Django calls
    # close_old_connections when a request starts as well as when it ends: only a release
    # after use says the connection worked just now (a stamp at the start of every request
    # skipped the check of a connection idle for minutes, broken by a database restart).
    _used_since_release = False

    def _cursor(self, name: Any = None) -> Any:
        self._used_since_release = True
        return super()._cursor(name)  # type: ignore[misc]

    def hot_cursor(self) -> Any:
        """A cursor (Django's wrapper: logged, errors translated) whose parameters are bound on
        the server, for the fixed statements of the hot path (``config.rows.hot_cursor``):
        psycopg prepares each once a connection has run it ``prepare_threshold`` times
        (``JOBTRAIL_DB_PREPARE_THRESHOLD``), so PostgreSQL parses and plans it once. Every other
        query keeps Django's client-side binding (no limit on the number of values in an
        ``IN`` list, nothing prepared)."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        self._used_since_release = True
        with self.wrap_database_errors:
            cursor = base.ServerBindingCursor(self.connection)  # type: ignore[call-arg]
            tzloader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, Format.TEXT)
            if self.timezone != tzloader.timezone:
                register_tzloader(self.timezone, cursor)
            return self._prepare_cursor(cursor)  # type: ignore[attr-defined]

    def close_if_health_check_failed(self) -> None:
        enabled = getattr(self, "health_check_enabled", False)  # set by Django at connect
        if self.connection is not None and enabled and not getattr(self, "health_check_done", True):
            released = self._released_healthy_at
            delay = float(getattr(settings, "JOBTRAIL_DB_HEALTH_CHECK_AFTER", 1.0))
            if released is not None and time.monotonic() - released < delay:
                self.health_check_done = True
                return
        super().close_if_health_check_failed()

    def check_before_next_use(self) -> None:
        """Check the connection's health before its next query however recently it was
        healthy (the worker, before each task: a database restarted between two tasks must not
        fail the second one, which would wait for a sweep; a request's 503 is retried by its
        client at once)."""
        self._released_healthy_at = None

    def close_if_unusable_or_obsolete(self) -> None:
        super().close_if_unusable_or_obsolete()
        if self.connection is None or self.errors_occurred:
            self._released_healthy_at = None
        elif self._used_since_release:
            # kept after a request that used it without a database error: healthy as of now
            self._released_healthy_at = time.monotonic()
        # else unused since the last release (the start of a request): the stamp stays
        self._used_since_release = False

    def close(self) -> None:
        self._released_healthy_at = None
        self._used_since_release = False
        super().close()
