"""The project's periodic tasks, registered in django-celery-beat's tables on every migrate.

Registration is idempotent: a missing task is created; an existing one is left as staff set it
(paused or re-timed in the admin).
"""

from typing import Any

from django.conf import settings

# Periodic tasks that beat runs itself instead of queueing for a worker (ops/scheduler.py): they
# only look for lost work and send at most one wake-up, so a stopped worker does not make the
# broker fill with one of their messages per round.
# Task name -> the task object's dotted path, resolved when first run: importing every task
# module up front in beat (``import_default_modules``) sets Django up after Celery redirected
# stderr, and Django's logging handler then writes into the redirect: beat's log goes silent.
BEAT_SWEEPS = {
    "webhooks.dispatch_due_deliveries": "webhooks.tasks.dispatch_due_deliveries",
    "jobs.sweep_unrelayed_events": "jobs.tasks.sweep_unrelayed_events",
}


def periodic_tasks() -> list[dict[str, Any]]:
    return [
        {
            "name": "Worker heartbeat",
            "task": "ops.heartbeat",
            "every": settings.JOBTRAIL_HEARTBEAT_INTERVAL,
        },
        {
            "name": "Wide lane worker heartbeat",
            "task": "ops.heartbeat.wide",
            "every": settings.JOBTRAIL_HEARTBEAT_INTERVAL,
        },
        {
            # lost wake-ups of the job event relay (cheap: a partial index of unrelayed events)
            "name": "Relay waiting job events",
            "task": "jobs.sweep_unrelayed_events",
            "every": 5,
        },
        {
            "name": "Expire stale jobs",
            "task": "jobs.expire_stale_jobs",
            "every": settings.JOBTRAIL_EXPIRY_INTERVAL,
        },
        {
            "name": "Queue lost report builds",
            "task": "reports.queue_pending_reports",
            "every": 60,
        },
        {
            "name": "Dispatch due webhook deliveries",
            "task": "webhooks.dispatch_due_deliveries",
            "every": settings.JOBTRAIL_WEBHOOK_DISPATCH_INTERVAL,
        },
        {
            "name": "Purge old webhook attempts and deliveries",
            "task": "webhooks.purge_old_deliveries",
            "every": 3600,
        },
        {
            "name": "Purge expired idempotency keys",
            "task": "jobs.purge_idempotency_keys",
            "every": 3600,
        },
    ]


def register_periodic_tasks(**kwargs: Any) -> None:
    """post_migrate receiver: create the periodic tasks that do not exist yet."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    using = kwargs.get("using", "default")
    for spec in periodic_tasks():
        if PeriodicTask.objects.using(using).filter(name=spec["name"]).exists():
            continue
        schedule, _ = IntervalSchedule.objects.using(using).get_or_create(
            every=spec["every"], period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.using(using).create(
            name=spec["name"],
            task=spec["task"],
            interval=schedule,
            enabled=True,
            # a run a stopped worker finds later than its next one is dropped, not run late
            expire_seconds=spec["every"],
        )
