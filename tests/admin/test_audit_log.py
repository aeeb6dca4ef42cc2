"""Every manual action in the console is recorded in the admin history with the staff user."""

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobStatus
from reports.services import report_build
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.relay import run_relay
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


def history(obj: Any) -> list[tuple[str, int, str]]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(type(obj)), object_id=str(obj.pk)
    ).order_by("id")
    return [(e.user.username, e.action_flag, e.get_change_message()) for e in entries]


def completed_job() -> Job:
    job = job_in_status(JobStatus.COMPLETED, company=CompanyFactory())
    run_relay()
    report_build(job_id=job.pk)
    return job


def test_rebuild_report_from_the_job_page_is_logged(staff: Client, admin_user: Any) -> None:
    job = completed_job()
    staff.post(reverse("admin:jobs_job_rebuild_report", args=[job.pk]))
    assert history(job) == [(admin_user.username, CHANGE, "Rebuild report: queued.")]


def test_rebuild_reports_action_is_logged_per_job(staff: Client, admin_user: Any) -> None:
    jobs = [completed_job(), completed_job()]
    staff.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "rebuild_reports", helpers.ACTION_CHECKBOX_NAME: [str(j.pk) for j in jobs]},
    )
    for job in jobs:
        assert history(job) == [
            (admin_user.username, CHANGE, "Rebuild report: queued (list action).")
        ]


def test_redeliver_failed_since_is_logged_per_endpoint(staff: Client, admin_user: Any) -> None:
    company = CompanyFactory()
    endpoint = endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    JobFactory(company=company)
    run_relay()
    WebhookDelivery.objects.update(status="failed")
    since = timezone.now() - timedelta(days=1)
    staff.post(
        reverse("admin:webhooks_webhookendpoint_changelist"),
        {
            "action": "redeliver_failed_since",
            helpers.ACTION_CHECKBOX_NAME: [str(endpoint.pk)],
            "since": since.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    [(user, flag, message)] = history(WebhookEndpoint.objects.get(pk=endpoint.pk))
    assert (user, flag) == (admin_user.username, CHANGE)
    assert message.startswith("Redeliver failed since ") and message.endswith(": 1 queued.")


def test_cancels_are_logged_per_canceled_job(staff: Client, admin_user: Any) -> None:
    company = CompanyFactory()
    one = job_in_status(JobStatus.PROCESSING, company=company)
    selected = [JobFactory(company=company), job_in_status(JobStatus.PROCESSING, company=company)]
    finished = job_in_status(JobStatus.COMPLETED, company=company)

    staff.post(
        reverse("admin:jobs_job_cancel", args=[one.pk]), {"confirm": "yes", "message": "Stop."}
    )
    staff.post(
        reverse("admin:jobs_job_changelist"),
        {
            "action": "cancel_selected",
            "confirm": "yes",
            "message": "",
            helpers.ACTION_CHECKBOX_NAME: [str(j.pk) for j in [*selected, finished]],
        },
    )

    assert history(one) == [(admin_user.username, CHANGE, "Canceled: Stop.")]
    for job in selected:
        assert history(job) == [(admin_user.username, CHANGE, "Canceled.")]
    assert history(finished) == []  # already finished: skipped, nothing logged


def test_a_cancel_that_another_cancel_beat_logs_nothing(
    staff: Client, admin_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same staff user cancels a job from two tabs at once: the second request finds it
    finished at the lock, so the job's history gets the first request's entry only (it got
    both, the second with its own message, a cancel it did not make)."""
    from jobs import services
    from jobs.models import EventSource

    job = job_in_status(JobStatus.PROCESSING, company=CompanyFactory())
    real_cancel = services.jobs_cancel

    def the_other_tab_wins(**kwargs: Any) -> Any:
        # the other tab's request commits its cancel between this one's read and its lock
        real_cancel(job_ids=[job.pk], actor=admin_user, source=EventSource.ADMIN, message="first")
        monkeypatch.setattr(services, "jobs_cancel", real_cancel)
        return real_cancel(**kwargs)

    monkeypatch.setattr(services, "jobs_cancel", the_other_tab_wins)
    response = staff.post(
        reverse("admin:jobs_job_changelist"),
        {
            "action": "cancel_selected",
            "confirm": "yes",
            "message": "second",
            helpers.ACTION_CHECKBOX_NAME: [str(job.pk)],
        },
        follow=True,
    )

    assert "Canceled 0 jobs. 1 already finished and skipped." in response.content.decode()
    assert history(job) == []  # the first tab's request logs its own (not this one's)
    assert job.events.filter(status=JobStatus.FAILED).count() == 1
