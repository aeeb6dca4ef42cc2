"""django_celery_beat's pages: schedules with their periodic tasks read in one query, and the
periodic tasks' list actions behind the change permission, logged.

The package's inline lists the tasks of a schedule; each task's name shows as its ``__str__``,
which reads the task's schedule again: one query per task. The schedules are re-registered
with an inline that reads the schedules with the tasks.

The package's periodic-task actions (enable, disable, toggle, run now) declare no permission,
so Django offers them to anyone who may view the list, and they log nothing: a view-only staff
user could stop the expiry sweep or run the purge. Re-registered, each needs the change
permission and writes one admin log entry per task.
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
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


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    def _logged(self, request: HttpRequest, queryset: QuerySet[PeriodicTask], action: str) -> None:
        tasks = list(queryset)
        getattr(super(), action)(request, queryset)
        message = f"{action.replace('_', ' ').capitalize()} (list action)."
        for task in tasks:
            self.log_change(request, task, message)

    @admin.action(description=_("Enable selected tasks"), permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._logged(request, queryset, "enable_tasks")

    @admin.action(description=_("Disable selected tasks"), permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._logged(request, queryset, "disable_tasks")

    @admin.action(description=_("Toggle activity of selected tasks"), permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._logged(request, queryset, "toggle_tasks")

    @admin.action(description=_("Run selected tasks"), permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._logged(request, queryset, "run_tasks")


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
