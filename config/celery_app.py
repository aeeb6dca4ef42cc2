"""The Celery application; tasks are discovered in the installed Django apps."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("jobtrail")
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
