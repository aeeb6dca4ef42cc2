"""django_celery_beat's schedule pages, with their periodic tasks read in one query.

The package's inline lists the tasks of a schedule; each task's name shows as its ``__str__``,
which reads the task's schedule again: one query per task. The schedules are re-registered
with an inline that reads the schedules with the tasks.
"""

from typing import Any

from django.contrib import admin
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
