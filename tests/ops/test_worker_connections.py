"""The Celery worker keeps its PostgreSQL connection from one task to the next.

Celery's Django fix-up (the one a real worker installs) closes the database connections before
and after every task unless ``CELERY_DB_REUSE_MAX`` is set; each task then paid for a new
PostgreSQL backend. ``config.celery_app`` applies Django's rule between tasks instead. These
tests send the same ``task_prerun``/``task_postrun`` signals a worker sends around a task, with
the fix-up installed as a worker installs it.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from celery.fixups.django import DjangoWorkerFixup
from celery.signals import task_postrun, task_prerun
from django.db import connection

from config.celery_app import app
from jobs.tasks import expire_stale_jobs
from tests.live import wait_until
from tests.pg import side_connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fixup() -> Iterator[DjangoWorkerFixup]:
    """The fix-up a worker installs (its signal handlers stay connected while it lives)."""
    installed = DjangoWorkerFixup(app).install()
    yield installed
    del installed  # weakly connected: gone with it


def run_task(body: Any) -> Any:
    """What a worker does around a task: ``task_prerun``, the body, ``task_postrun``."""
    task = expire_stale_jobs
    task.push_request(is_eager=False, id="t")
    try:
        task_prerun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
        try:
            return body()
        finally:
            task_postrun.send(sender=task, task_id="t", task=task, args=(), kwargs={})
    finally:
        task.pop_request()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_consecutive_tasks_share_one_backend(fixup: DjangoWorkerFixup) -> None:
    pids = {run_task(backend_pid) for _ in range(5)}
    assert len(pids) == 1


def test_a_connection_broken_between_tasks_is_replaced_before_the_next(
    fixup: DjangoWorkerFixup,
) -> None:
    """A database restart between two tasks: the kept connection is checked (however recently
    it was healthy) and replaced, and the next task runs."""
    first = run_task(backend_pid)
    with side_connection(autocommit=True) as side:
        side.execute("SELECT pg_terminate_backend(%s)", [first])
    wait_until(lambda: not backend_alive(first), 10, "the backend to end")
    assert run_task(backend_pid) != first


def backend_alive(pid: int) -> bool:
    with side_connection(autocommit=True) as side:
        row = side.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return bool(row and row[0])


def test_without_persistent_connections_each_task_gets_its_own(fixup: DjangoWorkerFixup) -> None:
    kept = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 0  # read when the next connection opens
    try:
        pids = [run_task(backend_pid) for _ in range(3)]
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = kept
        connection.close()
    assert len(set(pids)) == 3
