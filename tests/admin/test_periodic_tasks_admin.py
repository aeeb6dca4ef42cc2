"""The periodic tasks' list actions (django_celery_beat's) need the change permission and are
logged (ops/admin.py)."""

from typing import Any

import pytest
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_celery_beat_periodictask_changelist"


def _task() -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(
        name="Expire stale jobs (test)", task="jobs.expire_stale_jobs", interval=every
    )


def _client(*codenames: str) -> Client:
    user = UserFactory(is_staff=True, is_superuser=False)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("action", ["disable_tasks", "toggle_tasks", "run_tasks"])
def test_a_view_only_staff_user_cannot_disable_toggle_or_run_a_task(
    action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: ran.append(a))
    task = _task()
    client = _client("view_periodictask")
    changelist = reverse(CHANGELIST)
    assert f'value="{action}"' not in client.get(changelist).content.decode()

    client.post(changelist, {"action": action, helpers.ACTION_CHECKBOX_NAME: [task.pk]})

    task.refresh_from_db()
    assert task.enabled and ran == []
    assert not LogEntry.objects.exists()


def test_with_the_change_permission_a_disable_is_done_and_logged() -> None:
    task = _task()
    client = _client("view_periodictask", "change_periodictask")
    changelist = reverse(CHANGELIST)

    response = client.post(
        changelist, {"action": "disable_tasks", helpers.ACTION_CHECKBOX_NAME: [task.pk]}
    )

    assert response.status_code == 302
    task.refresh_from_db()
    assert not task.enabled
    [entry] = LogEntry.objects.all()
    assert (entry.object_id, entry.get_change_message()) == (
        str(task.pk),
        "Disable tasks (list action).",
    )


def test_a_run_the_package_refuses_is_not_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Run" refuses every selected task when one names a task the worker does not know (an
    error message, nothing sent): the admin log must not say it ran."""
    ran: list[Any] = []
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: ran.append(a))
    known = _task()
    unknown = PeriodicTask.objects.create(
        name="Renamed task (test)", task="jobs.no_such_task", interval=known.interval
    )
    client = _client("view_periodictask", "change_periodictask")
    changelist = reverse(CHANGELIST)

    response = client.post(
        changelist,
        {"action": "run_tasks", helpers.ACTION_CHECKBOX_NAME: [known.pk, unknown.pk]},
        follow=True,
    )

    shown = [(m.level, str(m)) for m in response.context["messages"]]
    assert shown == [(messages.ERROR, 'task "jobs.no_such_task" not found')]
    assert ran == []
    assert not LogEntry.objects.exists()


def test_a_run_is_logged_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []
    monkeypatch.setattr("celery.app.task.Task.apply_async", lambda *a, **k: ran.append(a))
    task = _task()
    client = _client("view_periodictask", "change_periodictask")

    client.post(
        reverse(CHANGELIST), {"action": "run_tasks", helpers.ACTION_CHECKBOX_NAME: [task.pk]}
    )

    assert len(ran) == 1
    [entry] = LogEntry.objects.all()
    assert entry.get_change_message() == "Run tasks (list action)."
