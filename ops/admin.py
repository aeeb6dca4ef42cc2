"""django_celery_beat's pages: schedules with their periodic tasks read in one query, and the
periodic tasks' list actions behind the change permission, logged.

The package's inline lists the tasks of a schedule; each task's name shows as its ``__str__``,
which reads the task's schedule again: one query per task. The schedules are re-registered
with an inline that reads the schedules with the tasks.

The package's periodic-task actions (enable, disable, toggle, run now) declare no permission,
so Django offers them to anyone who may view the list, and they log nothing: a view-only staff
user could stop the expiry sweep or run the purge. Re-registered, each needs the change
permission and writes one admin log entry per task, unless it refused (an error message).
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)


class PeriodicTaskInline(beat_admin.PeriodicTaskInline):
    def get_queryset(self, request: HttpRequest) -> QuerySet[PeriodicTask]:
        schedules = ("interval", "crontab", "solar", "clocked")
        return super().get_queryset(request).select_related(*schedules)


def _reregister(model: Any, package_admin: type[admin.ModelAdmin]) -> None:
    admin.site.unregister(model)
    admin.site.register(
        model, type(package_admin.__name__, (package_admin,), {"inlines": [PeriodicTaskInline]})
    )


_reregister(ClockedSchedule, beat_admin.ClockedScheduleAdmin)
_reregister(CrontabSchedule, beat_admin.CrontabScheduleAdmin)
_reregister(SolarSchedule, beat_admin.SolarScheduleAdmin)
_reregister(IntervalSchedule, beat_admin.IntervalScheduleAdmin)


class _Reporting:
    """``model_admin`` as the package's action sees it, noting whether the action refused (an
    error message: "run" refuses every task when one names a task the worker does not know)."""

    def __init__(self, model_admin: admin.ModelAdmin) -> None:
        self._model_admin = model_admin
        self.refused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model_admin, name)

    def message_user(
        self, request: HttpRequest, message: Any, level: int = messages.INFO, *args: Any, **kw: Any
    ) -> None:
        if level >= messages.ERROR:
            self.refused = True
        self._model_admin.message_user(request, message, level, *args, **kw)


def _guarded(name: str) -> Any:
    """The package's action ``name``, behind the change permission and logged per task (not
    when the action refused)."""
    package_action = getattr(beat_admin.PeriodicTaskAdmin, name)
    message = f"{name.replace('_', ' ').capitalize()} (list action)."

    @admin.action(description=package_action.short_description, permissions=["change"])
    def action(
        model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PeriodicTask]
    ) -> None:
        tasks = list(queryset)
        reporting = _Reporting(model_admin)
        package_action(reporting, request, queryset)
        if reporting.refused:
            return
        for task in tasks:
            model_admin.log_change(request, task, message)

    action.__name__ = name
    return action


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    enable_tasks = _guarded("enable_tasks")
    disable_tasks = _guarded("disable_tasks")
    toggle_tasks = _guarded("toggle_tasks")
    run_tasks = _guarded("run_tasks")


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
