"""Console v2 (issue 13): exact times, failure reasons as the API's codes, support's searches."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from jobs import services
from jobs.models import Job, JobStatus
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.relay import run_relay
from webhooks.models import WebhookAttempt, WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

EXACT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def _at(job: Job, moment: datetime) -> Job:
    Job.objects.filter(pk=job.pk).update(created_at=moment, last_activity_at=moment)
    return Job.objects.get(pk=job.pk)


# --- exact time ---------------------------------------------------------------------------------


def test_job_list_and_page_show_seconds_and_utc(staff: Client) -> None:
    job = job_in_status(JobStatus.PROCESSING)
    moment = datetime(2026, 11, 23, 7, 32, 5, tzinfo=UTC)
    Job.objects.filter(pk=job.pk).update(created_at=moment, start_time=moment)

    listing = staff.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert ">2026-11-23 07:32:05 UTC</time>" in listing
    assert 'datetime="2026-11-23T07:32:05+00:00" title="' in listing  # "… ago" as tooltip

    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    created = re.search(r"field-created_exact.*?</div>\s*</div>", page, re.S)
    assert created and "2026-11-23 07:32:05 UTC" in created.group(0)
    assert "ago)" in created.group(0)  # the relative time beside it
    started = re.search(r"field-started.*?</div>\s*</div>", page, re.S)
    assert started and "2026-11-23 07:32:05 UTC" in started.group(0)
    timeline = page[page.index('id="timeline"') : page.index('id="push-results"')]
    assert len(EXACT.findall(timeline)) == 2  # created, started
    assert "a.m." not in page and "p.m." not in page


def test_two_attempts_five_seconds_apart_are_told_apart(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    JobFactory(company=company)
    run_relay()
    delivery = WebhookDelivery.objects.get()
    first = datetime(2026, 11, 23, 7, 32, 0, tzinfo=UTC)
    for number, moment in ((1, first), (2, first + timedelta(seconds=5))):
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, started_at=moment, duration_ms=1234, status_code=503
        )
    page = staff.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    html = page.content.decode()
    assert "2026-11-23 07:32:00 UTC" in html and "2026-11-23 07:32:05 UTC" in html
    assert html.count("1234 ms") == 2
    created = re.search(r"field-created.*?</div>\s*</div>", html, re.S)
    assert created and EXACT.search(created.group(0)) and "jt-ago" in created.group(0)


# --- failure reasons as the API's codes -----------------------------------------------------------


def test_failure_reasons_show_as_api_codes_with_the_label_as_tooltip(staff: Client) -> None:
    failed = JobFactory()
    services.job_fail(job_id=failed.pk, failure_reason="accounting_system_rate_limit")
    other = job_in_status(JobStatus.FAILED)  # service_timeout
    url = reverse("admin:jobs_job_changelist")

    # (the code may wrap after its underscores in a narrow column: <wbr> adds no text)
    listing = staff.get(url).content.decode().replace("<wbr>", "")
    cell = '<span class="jt-code" title="Accounting System Rate Limit">'
    assert cell + "accounting_system_rate_limit</span>" in listing
    filter_box = listing[listing.index('data-filter-title="failure reason"') :]
    filter_box = filter_box[: filter_box.index("</details>")]
    assert 'title="Accounting System Rate Limit" class="jt-code">accounting_system_rate_limit<' in (
        filter_box
    )
    assert "Accounting System Rate Limit</a>" not in filter_box
    assert filter_box.count("<li") == 16  # All + the 15 reasons, no query for the choices

    filtered = staff.get(url + "?failure_reason__exact=accounting_system_rate_limit")
    assert [job.pk for job in filtered.context["cl"].result_list] == [failed.pk]
    assert other.pk != failed.pk
    assert staff.get(url + "?failure_reason__exact=nope").status_code == 302  # ?e=1: bad filter

    page = staff.get(reverse("admin:jobs_job_change", args=[failed.pk])).content.decode()
    page = page.replace("<wbr>", "")
    assert (cell + "accounting_system_rate_limit</span>") in page
    assert ">Accounting System Rate Limit<" not in page


# --- search: code (any case), code prefix, company name prefix; index-backed --------------------


def _listed(staff: Client, term: str) -> set[str]:
    response = staff.get(reverse("admin:jobs_job_changelist"), {"q": term})
    assert response.status_code == 200
    return {job.code for job in response.context["cl"].result_list}


def test_search_code_any_case_code_prefix_and_company_name(staff: Client) -> None:
    acme, other = CompanyFactory(name="Acme Accounting"), CompanyFactory(name="Zeta Corp")
    a1 = JobFactory(company=acme, code="INV-2026-0001")
    a2 = JobFactory(company=acme, code="pay-7")
    z1 = JobFactory(company=other, code="INV-2026-0002")
    z2 = JobFactory(company=other, code="inv_x")  # "_" is a literal, not LIKE's wildcard
    JobFactory(company=other, code="INVX")

    assert _listed(staff, "inv-2026-0001") == {a1.code}  # exact code, another case
    assert _listed(staff, "  INV-2026 ") == {a1.code, z1.code}  # code prefix
    assert _listed(staff, "inv_") == {z2.code}
    assert _listed(staff, "acme") == {a1.code, a2.code}  # company name prefix, any case
    assert _listed(staff, "ACME ACC") == {a1.code, a2.code}
    assert _listed(staff, "accounting") == set()  # prefix, not a substring search
    assert _listed(staff, "2026") == set()
    assert _listed(staff, str(z1.pk)) == {z1.code}


def test_search_never_scans_jobs_with_a_leading_wildcard(staff: Client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    JobFactory(company=CompanyFactory(name="Acme"), code="ABC-1")
    with CaptureQueriesContext(connection) as queries:
        assert _listed(staff, "abc") == {"ABC-1"}
    patterns = [
        pattern
        for q in queries.captured_queries
        for pattern in re.findall(r"LIKE\s+(?:UPPER\()?'([^']*)'", q["sql"], re.I)
    ]
    assert patterns, "the search runs a LIKE"
    assert set(patterns) == {"abc%"}, patterns  # code and company name: prefixes only


@pytest.mark.postgres
def test_code_and_company_prefix_searches_can_use_their_indexes(staff: Client) -> None:
    from django.db import connection

    from jobs.models import Company

    JobFactory(company=CompanyFactory(name="Acme"), code="ABC-1")
    jobs = Job.objects.filter(code__istartswith="abc").order_by()
    exact = Job.objects.filter(code__iexact="abc-1").order_by()  # the delivery search
    companies = Company.objects.filter(name__istartswith="acme").order_by()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: ask whether it *can*
        try:
            job_plan = jobs.explain()
            exact_plan = exact.explain()
            company_plan = companies.explain()
        finally:
            cursor.execute("RESET enable_seqscan")
    assert "job_code_upper_pattern" in job_plan, job_plan
    assert "job_code_upper_pattern" in exact_plan, exact_plan
    assert "company_name_upper_pattern" in company_plan, company_plan


def test_delivery_pages_run_as_many_queries_for_many_rows_as_for_one(staff: Client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(url).status_code == 200
        return len(captured)

    JobFactory(company=company)
    run_relay()
    delivery = WebhookDelivery.objects.get()
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=delivery.created_at)
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    page = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
    queries(changelist), queries(page)  # warm the process's caches (content types): run alone,
    # the first load read them, and the test failed only when no earlier test had
    one = (queries(changelist), queries(page))
    for _ in range(5):
        JobFactory(company=company)
    run_relay()
    for number in range(2, 7):
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, started_at=delivery.created_at
        )
    assert WebhookDelivery.objects.count() == 6
    assert (queries(changelist), queries(page)) == one


def test_the_delivery_page_pretty_prints_its_payload_escaped(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    JobFactory(company=company, code="<b>x</b>")
    run_relay()
    delivery = WebhookDelivery.objects.get()
    html = staff.get(
        reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
    ).content.decode()
    block = html[html.index('<details open class="jt-payload">') :]
    block = block[: block.index("</details>")]
    assert "\n  &quot;data&quot;: {" in block and "\n  &quot;event&quot;: {" in block  # indented
    assert "&lt;b&gt;x&lt;/b&gt;" in block and "<b>x</b>" not in block


def test_unmatched_pushes_cannot_be_deleted_in_the_admin(staff: Client) -> None:
    from django.contrib.admin import helpers

    from jobs.models import UnmatchedPush

    push = UnmatchedPush.objects.create(
        company=CompanyFactory(), push_communication_id="p1", status="success", data={}
    )
    changelist = reverse("admin:jobs_unmatchedpush_changelist")
    assert 'value="delete_selected"' not in staff.get(changelist).content.decode()
    delete = reverse("admin:jobs_unmatchedpush_delete", args=[push.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    staff.post(
        changelist,
        {"action": "delete_selected", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [push.pk]},
    )
    assert UnmatchedPush.objects.filter(pk=push.pk).exists()


def test_reports_are_read_only_with_exact_times(staff: Client) -> None:
    """The report page shows no Save or Delete, the list no "Delete selected", and a POST to
    either changes nothing; its timestamps carry seconds and the zone."""
    from django.contrib.admin import helpers

    from reports.models import Report

    job = job_in_status(JobStatus.COMPLETED)  # finishing requests its report
    report = Report.objects.get(job=job)
    change = reverse("admin:reports_report_change", args=[report.pk])
    page = staff.get(change)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "deletelink" not in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)
    changelist = reverse("admin:reports_report_changelist")
    assert 'value="delete_selected"' not in staff.get(changelist).content.decode()
    delete = reverse("admin:reports_report_delete", args=[report.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    staff.post(
        changelist,
        {"action": "delete_selected", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [report.pk]},
    )
    assert staff.post(change, {"status": "failed"}).status_code == 403
    assert Report.objects.filter(pk=report.pk, status=report.status).exists()
