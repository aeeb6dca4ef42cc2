"""The Celery application; tasks are discovered in the installed Django apps."""

import logging
import os
from typing import Any

import kombu
from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import (
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

logger = logging.getLogger(__name__)

# The wide lane's queue (webhooks.lanes.QUEUE; spelled here: this module loads before the apps).
WIDE_LANE_QUEUE = "wide"


class Connection(kombu.Connection):
    """kombu's broker connection, which forgets its channel once it is collected.

    Workaround for celery 5.7.0 + kombu 5.7.0 on Redis, where a worker exits when Redis restarts
    (tests/production/test_broker_restarts.py). Since celery/celery#10242 (the fix of GH-9705)
    the worker handles a lost connection with ``collect()`` then ``close()``. ``collect()``
    detaches the transport, but keeps the default channel when closing it failed (the Redis
    channel reads its pending BRPOP reply from the dead socket and raises a connection error);
    ``close()`` then closes that channel again and restores its unacknowledged messages through
    the detached transport: ``AttributeError("'NoneType' object has no attribute 'hostname'")``
    in ``kombu.transport.redis.Channel._connparams``, which the worker treats as unrecoverable.
    Forgetting the channel makes ``close()`` a no-op after ``collect()``. The unacknowledged
    messages stay in Redis's unacked set and are restored after the visibility timeout; due
    webhook deliveries are queued again by the dispatcher anyway. Remove this when Celery or
    kombu stop closing a collected channel (same family as celery/celery#10205).
    """

    def collect(self, socket_timeout: float | None = None) -> None:
        super().collect(socket_timeout=socket_timeout)
        self._default_channel = None


class JobtrailAMQP(AMQP):
    Connection = Connection


app = Celery("jobtrail", amqp=JobtrailAMQP)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def leave_the_worker_process_group(**kwargs: object) -> None:
    """Put each prefork pool process in a process group of its own.

    Process managers that stop a program by signalling its whole process group (honcho under
    `make run`, supervisord's stopasgroup) would otherwise SIGTERM the pool processes along
    with the worker: they die mid-task and the worker logs "Process 'ForkPoolWorker-N' exited
    with 'signal 15 (SIGTERM)'" errors. Only the worker itself gets the signal now; its warm
    shutdown lets running tasks finish and then stops the pool. Billiard still ends the pool
    processes on time limits and `revoke(terminate=True)` (it signals a group leader's group).
    """
    os.setpgid(0, 0)


@task_postrun.connect
def release_database_connections(task: Any = None, **kwargs: object) -> None:
    """After a task, as after a request: a connection that is broken, left outside autocommit
    or older than ``CONN_MAX_AGE`` is closed; the others are kept for the next task (Celery's
    fix-up closes every connection only every ``CELERY_DB_REUSE_MAX`` tasks). A task run
    eagerly (inside a caller's transaction) is left alone, as the fix-up leaves it."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@task_prerun.connect
def reuse_database_connections(task: Any = None, **kwargs: object) -> None:
    """Before a task, the same; a kept connection then serves the task after a health check
    (``check_before_next_use``), however recently it was healthy."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import connections

    release_database_connections()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and hasattr(conn, "check_before_next_use"):
            conn.check_before_next_use()


@worker_ready.connect
def forget_outstanding_wakeups(**kwargs: object) -> None:
    """A worker is ready: wake-ups outstanding from before (lost with a broker's messages, or
    fetched by a worker that died) are forgotten, so the next one goes out at once instead of
    after the sweeps' ever longer wait (``config.outbox.wakeups_reset``)."""
    from django.db import connection

    from config.outbox import wakeups_reset

    try:
        forgotten = wakeups_reset()
    except Exception:  # the database is away: the sweeps resend them later
        logger.warning("outstanding wake-ups not reset at worker start", exc_info=True)
    else:
        if forgotten:
            logger.info("worker ready: %d outstanding wake-up(s) forgotten", forgotten)
    finally:
        connection.close()


@celeryd_init.connect
def yield_the_cpu_to_the_web(options: dict[str, Any] | None = None, **kwargs: object) -> None:
    """Set the worker's CPU scheduling: ``JOBTRAIL_WORKER_CPU`` (``normal`` by default), or
    ``JOBTRAIL_WIDE_LANE_CPU`` (``idle`` by default) for a worker that consumes only the wide
    lane's queue (``--queues wide``: the Procfile's ``wide``, ``webhooks.lanes``).

    ``idle`` puts the worker under Linux's ``SCHED_IDLE`` policy; its pool processes and every
    thread they start inherit it. It gets every cycle nothing else on the host wants, and a web
    request that wakes up takes the core from it at once (a higher nice value does not: the
    kernel lets the running worker thread finish its slice first). What it gains the API and
    costs the webhooks on shared cores is measured in README "Performance"; its work is
    delayed under load, never lost. Otherwise ``JOBTRAIL_WORKER_NICE`` applies. Where the
    policy does not exist (not Linux) or may not be set, the worker logs it and runs as it is.
    """
    from django.conf import settings

    setting = "JOBTRAIL_WORKER_CPU"
    if set((options or {}).get("queues") or ()) == {WIDE_LANE_QUEUE}:
        setting = "JOBTRAIL_WIDE_LANE_CPU"
    if getattr(settings, setting, "normal") == "idle":
        if not hasattr(os, "SCHED_IDLE"):
            logger.info("%s=idle: no SCHED_IDLE on this system; ignored", setting)
            return
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            logger.warning("%s=idle: SCHED_IDLE refused (%s); ignored", setting, exc)
        else:
            logger.info("%s=idle: this worker runs under SCHED_IDLE", setting)
        return
    nice = int(getattr(settings, "JOBTRAIL_WORKER_NICE", 0))
    if nice > 0:
        os.nice(nice)
