"""The Celery application; tasks are discovered in the installed Django apps."""

import os

import kombu
from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import celeryd_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


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


@celeryd_init.connect
def yield_the_cpu_to_the_web(**kwargs: object) -> None:
    """Lower the worker's CPU priority by ``JOBTRAIL_WORKER_NICE`` (its pool processes inherit
    it): where web and worker share cores, the API's requests go first and the worker uses what
    they leave. 0 (the default) leaves the priority alone."""
    from django.conf import settings

    nice = int(getattr(settings, "JOBTRAIL_WORKER_NICE", 0))
    if nice > 0:
        os.nice(nice)
