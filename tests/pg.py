"""PostgreSQL helpers for tests that make the database drop a connection."""

from collections.abc import Callable

import psycopg
from django.db import connection


def backend_terminator() -> Callable[[int], None]:
    """A function ending a PostgreSQL backend by its pid (``pg_terminate_backend``), as a
    database restart or failover drops a connection, through a connection of its own. Made in
    the test's thread (it copies that thread's connection settings), callable from any thread."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)  # Django's own, not psycopg's connect() arguments
    params.pop("context", None)

    def terminate(pid: int) -> None:
        with psycopg.connect(**params, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    return terminate
