"""PostgreSQL helpers for tests that make the database drop a connection."""

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import connection


def _params() -> dict[str, Any]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)  # Django's own, not psycopg's connect() arguments
    params.pop("context", None)
    return params


def side_connection(*, autocommit: bool = False) -> psycopg.Connection:
    """A psycopg connection of its own to the test database (to hold locks beside the code
    under test); the caller closes it."""
    return psycopg.connect(**_params(), autocommit=autocommit)


def lock_waits() -> int:
    """How many backends of the test database wait for a lock now."""
    with side_connection(autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_lock_waits(count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` backends of the test database wait for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_waits() >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} backend(s) never waited for a lock")


def backend_terminator() -> Callable[[int], None]:
    """A function ending a PostgreSQL backend by its pid (``pg_terminate_backend``), as a
    database restart or failover drops a connection, through a connection of its own. Made in
    the test's thread (it copies that thread's connection settings), callable from any thread."""
    params = _params()

    def terminate(pid: int) -> None:
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    return terminate


def in_thread(work: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    """Start ``work`` in a thread of its own, on its own database connection (closed when it
    ends); whatever it raises is added to ``errors`` for the test to report."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread
