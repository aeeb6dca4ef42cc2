"""Every admin page renders; the job list and page run as many queries for 500 rows as for 5."""

from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import services
from jobs.ingest import push_ingest
from jobs.models import Job, JobStatus
from reports.services import report_build
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.relay import run_relay
from webhooks.models import WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def lived_in() -> Job:
    company = CompanyFactory(name="Lived In")
    endpoint_create(company=company, url="http://127.0.0.1:9/hook", events=["*"])
    job = job_in_status(JobStatus.PROCESSING, company=company)
    services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id="p1",
            status="failed",
            validation_errors=[{"field": "currencyRef", "message": "Multi currency <b>off</b>"}],
        ),
    )
    services.job_complete_with_errors(job_id=job.pk)
    run_relay()  # the worker: deliveries fanned out, the report requested
    report_build(job_id=job.pk)
    run_relay()
    deliver(WebhookDelivery.objects.first().pk)  # type: ignore[union-attr]  # port 9: fails
    job_in_status(JobStatus.FAILED, company=company)
    JobFactory(company=company)
    push_ingest(  # a push result that came before its job registered it: waits, unmatched
        company=company,
        data=services.PushResultData(push_communication_id="early", status="success"),
    )
    return job


def test_every_app_index_renders(staff: Client, lived_in: Job) -> None:
    """Each app's page (every list's breadcrumb links to it) extends the site index's template:
    it rendered the dashboard without its figures, a 500."""
    labels = {model._meta.app_label for model in admin.site._registry}
    assert {"jobs", "webhooks", "reports"} <= labels
    for label in sorted(labels):
        url = reverse("admin:app_list", args=[label])
        response = staff.get(url)
        assert response.status_code == 200, url
        assert 'id="trend-jobs"' not in response.content.decode()  # the dashboard: index only
    assert 'id="trend-jobs"' in staff.get(reverse("admin:index")).content.decode()


def test_every_registered_model_renders(staff: Client, lived_in: Job) -> None:
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = staff.get(changelist)
        assert response.status_code == 200, changelist
        obj = model_admin.get_queryset(response.wsgi_request).first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert staff.get(change).status_code == 200, change
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert staff.get(add).status_code in (200, 403), add


def test_dashboard_renders(staff: Client, lived_in: Job) -> None:
    response = staff.get(reverse("admin:index"))
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="jobs-24h"' in content and "<svg" in content
    assert 'id="stuck-jobs"' in content and 'id="failing-endpoints"' in content
    assert "http://127.0.0.1:9/hook" in content  # its delivery failed


def test_job_page_shows_timeline_push_results_deliveries_report(
    staff: Client, lived_in: Job
) -> None:
    response = staff.get(reverse("admin:jobs_job_change", args=[lived_in.pk]))
    content = response.content.decode()
    assert 'id="timeline"' in content
    for status in ("#1 created", "#2 started", "#3 completed with errors"):
        assert status.replace(" with errors", "_with_errors") in content
    assert f"job__id__exact={lived_in.pk}" in content
    assert "1 failed" in content
    assert 'id="report-download"' in content
    assert "jobs.completed_with_errors" in content
    assert 'id="cancel-job"' not in content  # finished: nothing to cancel
    assert "<b>off</b>" not in content


def test_push_result_errors_are_readable_and_escaped(staff: Client, lived_in: Job) -> None:
    response = staff.get(reverse("admin:jobs_pushresult_changelist") + "?status__exact=failed")
    content = response.content.decode()
    assert "<strong>currencyRef</strong>: Multi currency &lt;b&gt;off&lt;/b&gt;" in content


def test_a_push_results_ignored_fields_are_shown_to_staff(staff: Client) -> None:
    job = job_in_status(JobStatus.PROCESSING)
    result, _ = services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id="typo",
            status="failed",
            ignored_fields=["validationErrors"],
        ),
    )

    response = staff.get(reverse("admin:jobs_pushresult_change", args=[result.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert "Ignored fields" in content
    assert "validationErrors" in content


def test_list_filters_and_search(staff: Client, lived_in: Job) -> None:
    url = reverse("admin:jobs_job_changelist")
    company = lived_in.company
    other = JobFactory(type="bulk_update")
    cases = {
        "?status__exact=failed": 1,
        "?failure_reason__exact=service_timeout": 1,
        "?type=bulk_update": 1,
        f"?company__id__exact={company.pk}": 3,
        "?created_from=2000-01-01": 4,
        "?created_to=2000-01-01": 0,
        f"?q={lived_in.code}": 1,
        f"?q={other.pk}": 1,
        "?q=nothing-like-it": 0,
    }
    for query, expected in cases.items():
        response = staff.get(url + query)
        assert response.status_code == 200, query
        assert len(response.context["cl"].result_list) == expected, query


def test_bad_date_filter_is_not_a_server_error(staff: Client) -> None:
    response = staff.get(reverse("admin:jobs_job_changelist") + "?created_from=yesterday")
    assert response.status_code in (200, 302)


def _make_jobs(n: int) -> None:
    company = CompanyFactory()
    Job.objects.bulk_create(
        Job(
            company=company,
            code=f"BULK-{company.pk.hex[:6]}-{i}",
            type="export",
            status=JobStatus.PENDING,
            last_activity_at=company.created_at,
            expires_after=60,
        )
        for i in range(n)
    )


def _queries(staff: Client, url: str) -> tuple[int, Any]:
    staff.get(url)  # warm per-process caches
    with CaptureQueriesContext(connection) as captured:
        response = staff.get(url)
    assert response.status_code == 200
    return len(captured), response


def test_job_list_runs_as_many_queries_for_500_jobs_as_for_5(staff: Client) -> None:
    url = reverse("admin:jobs_job_changelist")
    _make_jobs(5)
    few, response = _queries(staff, url)
    assert len(response.context["cl"].result_list) == 5
    _make_jobs(495)
    many, response = _queries(staff, url)
    assert len(response.context["cl"].result_list) == 50  # a full page
    assert many == few


def test_job_page_runs_as_many_queries_for_500_events_as_for_5(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/", events=["jobs.update"])
    job = job_in_status(JobStatus.PROCESSING, company=company)
    url = reverse("admin:jobs_job_change", args=[job.pk])

    def progress(times: int) -> None:
        for n in range(times):
            services.job_record_progress(job_id=job.pk, effected_records=n)

    progress(3)
    few, response = _queries(staff, url)
    assert response.content.decode().count('class="jt-ev-') == 5  # created, started, 3 updates
    progress(495)
    run_relay()  # a delivery per update
    many, response = _queries(staff, url)
    assert response.content.decode().count('class="jt-ev-') == 500
    assert many == few


def test_malformed_ids_in_admin_urls_are_not_server_errors(staff: Client) -> None:
    assert staff.get("/admin/jobs/job/not-a-uuid/change/").status_code in (302, 404)
    response = staff.get(reverse("admin:jobs_job_changelist") + "?company__id__exact=bad")
    assert response.status_code in (200, 302)


def test_rebuild_report_from_the_job_page(staff: Client, lived_in: Job) -> None:
    from reports.models import Report
    from tests.factories import UserFactory

    url = reverse("admin:jobs_job_rebuild_report", args=[lived_in.pk])
    response = staff.post(url, follow=True)
    assert "is being rebuilt" in response.content.decode()
    assert Report.objects.get(job=lived_in).status == "pending"

    viewer = UserFactory(is_staff=True)
    client = Client()
    client.force_login(viewer)
    assert client.post(url).status_code == 403

    pending = JobFactory(company=lived_in.company)
    refused = staff.post(reverse("admin:jobs_job_rebuild_report", args=[pending.pk]), follow=True)
    assert "only completed jobs have reports" in refused.content.decode()
