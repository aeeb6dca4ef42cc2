"""The console live and at 1280 px, in Debian's Chromium (Playwright) against live_server.

Every list fits a 1280x900 window without scrolling sideways; the job page refreshes itself
when an event arrives through the API (and not while paused); the dashboard's trends and its
operations panel show what the database holds. The Content-Security-Policy check of
tests/admin/conftest.py's ``page`` fixture applies: htmx runs under ``script-src 'self'``.
"""

import json
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from rest_framework_simplejwt.tokens import RefreshToken

from jobs import services
from jobs.auth import CompanyTokenObtainPairSerializer
from jobs.ingest import push_ingest
from jobs.models import FailureReason, Job, JobStatus
from ops.models import Heartbeat
from ops.services import heartbeat_record
from reports.models import Report, ReportStatus
from tests.admin.browser import csp_checked_page, login
from tests.factories import ApiClientFactory, CompanyFactory, JobFactory, job_in_status
from tests.receiver import Reply, running_receiver
from tests.relay import run_relay
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import endpoint_create

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 1280, 900
# the page's width, or the list's when its table scrolls inside the admin's .results box
OVERFLOW_JS = """() => {
  const results = document.querySelector('#changelist .results');
  const inner = results ? results.scrollWidth - results.clientWidth : 0;
  return document.scrollingElement.scrollWidth + Math.max(0, inner);
}"""
# list headers laid out on more than one line (a header broken mid-word or across words)
COLUMNS_JS = """() => Array.from(document.querySelectorAll('#result_list thead th')).map(
  th => th.className + ' ' + Math.round(th.getBoundingClientRect().width)).join(', ')
  + ' | results ' + document.querySelector('#changelist .results').clientWidth"""
# (an inline box laid out on two lines has two client rects)
BROKEN_HEADERS_JS = """() => Array.from(document.querySelectorAll(
    '#result_list thead th .text > a, #result_list thead th .text > span'))
  .filter(el => el.innerText.trim() && el.getClientRects().length > 1)
  .map(el => el.innerText)"""


@pytest.fixture
def wide(chromium: Browser, live_server: Any, superuser: Any) -> Iterator[Page]:
    """A signed-in page in a 1280x900 window; fails the test if the CSP refused anything."""
    with csp_checked_page(chromium, viewport={"width": WIDTH, "height": HEIGHT}) as page:
        login(page, live_server.url, superuser.username)
        yield page


@pytest.fixture
def fast_refresh(settings: Any) -> int:
    settings.JOBTRAIL_ADMIN_REFRESH_SECONDS = 1
    return 1


def lived_in_console(receiver_url: str) -> dict[str, Any]:
    """Rows on every list, with the long values that used to widen them."""
    company = CompanyFactory(name="Lived In Company With A Rather Long Name")
    endpoint_create(
        company=company,
        url=f"{receiver_url}/hooks/a/rather/long/path/that/goes/on/and/on/for/the/layout",
        events=["*"],
    )
    endpoint_create(
        company=company, url="http://127.0.0.1:9/down-receiver-with-a-long-name", events=["*"]
    )
    job = job_in_status(
        JobStatus.PROCESSING, company=company, type="customer_case_bulk_update_with_long_type"
    )
    services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id="0123456789abcdef01234567",
            status="failed",
            validation_errors=[
                {"field": "lines[0].accountRef", "message": "The account does not exist " * 4}
            ],
        ),
    )
    failed = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_fail(
        job_id=failed.pk,
        failure_reason=FailureReason.ACCOUNTING_SYSTEM_AUTHENTICATION_FAILURE,
        message="refused",
    )
    JobFactory(company=company)
    job_in_status(JobStatus.COMPLETED, company=company)  # its report is requested
    push_ingest(
        company=company,
        data=services.PushResultData(
            push_communication_id="fedcba9876543210fedcba98", status="success", request_id="r-1"
        ),
    )
    run_relay()
    for delivery in WebhookDelivery.objects.all():
        deliver(delivery.pk)
    return {"job": job, "failed": failed, "company": company}


# --- layout at 1280 px --------------------------------------------------------------------------

LISTS = [
    "/admin/jobs/job/",
    "/admin/jobs/pushresult/",
    "/admin/jobs/unmatchedpush/",
    "/admin/jobs/company/",
    "/admin/webhooks/webhookdelivery/",
    "/admin/webhooks/webhookendpoint/",
    "/admin/reports/report/",
]


def test_every_list_fits_1280_px_with_status_colours_and_reason_codes(
    wide: Page, live_server: Any
) -> None:
    page, base = wide, live_server.url
    with running_receiver() as receiver:
        receiver.respond = lambda request: Reply(500) if "completed" in request.body else Reply(200)
        data = lived_in_console(receiver.url)
        for path in LISTS:
            page.goto(base + path)
            expect(page.locator("#result_list tbody tr").first).to_be_visible()
            width = page.evaluate(OVERFLOW_JS)
            assert width <= WIDTH, (
                f"{path} needs {width} px: it scrolls sideways at 1280 px; "
                + page.evaluate(COLUMNS_JS)
            )
            assert page.evaluate(BROKEN_HEADERS_JS) == [], f"{path}: a header wraps"
        # a dashboard with all its cards, and the pages of a job and of a delivery
        delivery = WebhookDelivery.objects.filter(attempts__gt=0).first()
        assert delivery is not None
        for path in (
            "/admin/",
            "/admin/?window=30d",
            f"/admin/jobs/job/{data['job'].pk}/change/",
            f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/",
        ):
            page.goto(base + path)
            width = page.evaluate(OVERFLOW_JS)
            assert width <= WIDTH, f"{path} needs {width} px"

    # the job list: the failure reason as the API's code, the human text as its tooltip
    page.goto(f"{base}/admin/jobs/job/?q={data['failed'].code}")
    reason = page.locator("#result_list td.field-reason .jt-code")
    expect(reason).to_have_text("accounting_system_authentication_failure")
    expect(reason).to_have_attribute("title", "Accounting System Authentication Failure")

    # deliveries: coloured status badges; the job id clipped, whole in its tooltip, linked
    page.goto(f"{base}/admin/webhooks/webhookdelivery/")
    badges = page.locator("#result_list td.field-status_badge .jt-badge")
    classes = {badges.nth(i).get_attribute("class") for i in range(badges.count())}
    assert {"jt-badge jt-delivered", "jt-badge jt-retrying"} <= classes
    job_link = page.locator("#result_list td.field-job_col a.jt-id").first
    title = job_link.get_attribute("title") or ""
    assert len(title) == 36  # the whole UUID
    assert job_link.get_attribute("href") == f"/admin/jobs/job/{title}/change/"
    assert job_link.evaluate("a => a.scrollWidth > a.clientWidth")  # clipped on screen

    # a delivery's attempts: outcome badges (HTTP 500 in red, 200 in green, no answer)
    failed_delivery = WebhookDelivery.objects.filter(last_status_code=500).first()
    assert failed_delivery is not None
    page.goto(f"{base}/admin/webhooks/webhookdelivery/{failed_delivery.pk}/change/")
    expect(page.locator(".field-outcome .jt-attempt-fail")).to_have_text("HTTP 500")
    down = WebhookDelivery.objects.filter(endpoint__url__contains=":9/").first()
    assert down is not None
    page.goto(f"{base}/admin/webhooks/webhookdelivery/{down.pk}/change/")
    expect(page.locator(".field-outcome .jt-attempt-error")).to_have_text("no answer")


# --- live: the job page -------------------------------------------------------------------------


def api_post(base: str, access: str, path: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_job_page_refreshes_on_an_api_event_and_not_while_paused(
    wide: Page, live_server: Any, fast_refresh: int
) -> None:
    page, base = wide, live_server.url
    client = ApiClientFactory()
    company = client.company_membership.company
    token: RefreshToken = CompanyTokenObtainPairSerializer.get_token(client)  # type: ignore[assignment]
    access = str(token.access_token)
    job = JobFactory(company=company)
    run_relay()

    page.goto(f"{base}/admin/jobs/job/{job.pk}/change/")
    live = page.locator("#job-live")
    expect(live).to_have_attribute("hx-get", f"/admin/jobs/job/{job.pk}/live/")
    expect(page.locator("#live-status")).to_contain_text("Live: refreshing every 1 s")
    expect(page.locator("#job-status-line .jt-badge")).to_have_text("pending")

    # paused: the polls are not sent, so an event from the API does not show
    toggle = page.locator("#live-toggle")
    expect(toggle).to_have_text("Pause auto-refresh")
    toggle.click()
    expect(toggle).to_have_text("Resume auto-refresh")
    assert page.evaluate("localStorage.getItem('jobtrail.live.paused')") == "1"
    assert api_post(base, access, f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}) == 201
    skipped = int(live.get_attribute("data-jt-skipped") or 0)
    page.wait_for_function(
        "n => Number(document.querySelector('#job-live').getAttribute('data-jt-skipped')) >= n",
        arg=skipped + 2,
    )  # two polls came and went unsent
    expect(page.locator("#timeline")).not_to_contain_text("started")
    expect(page.locator("#job-status-line .jt-badge")).to_have_text("pending")

    # the pause holds across a reload (localStorage)
    page.reload()
    expect(page.locator("#live-toggle")).to_have_text("Resume auto-refresh")
    expect(page.locator("#timeline")).to_contain_text("started")  # the reload shows it
    assert (
        api_post(
            base, access, f"/api/v1/jobs/{job.pk}/events/", {"status": "completed_with_errors"}
        )
        == 201
    )
    page.wait_for_function(
        "n => Number(document.querySelector('#job-live').getAttribute('data-jt-skipped')) >= n",
        arg=2,
    )
    expect(page.locator("#job-status-line .jt-badge")).to_have_text("processing")

    # resumed: the next poll (sent at once) brings the event and the status line
    page.locator("#live-toggle").click()
    expect(page.locator("#live-toggle")).to_have_text("Pause auto-refresh")
    expect(page.locator("#timeline")).to_contain_text("completed_with_errors")
    expect(page.locator("#job-status-line .jt-badge")).to_have_text("completed with errors")

    # once nothing moves (events relayed, report built) the region stops polling
    run_relay()
    report = Report.objects.get(job=job)
    Report.objects.filter(pk=report.pk).update(status=ReportStatus.READY)
    expect(page.locator("#job-live")).not_to_have_attribute(
        "hx-get", f"/admin/jobs/job/{job.pk}/live/"
    )
    expect(page.locator("#live-status")).to_contain_text("Not refreshing: nothing is moving")


# --- the dashboard: live, trends, operations --------------------------------------------------


def test_dashboard_trends_by_failure_reason_and_endpoint(wide: Page, live_server: Any) -> None:
    page, base = wide, live_server.url
    company = CompanyFactory(name="Trending")
    with running_receiver() as receiver:
        receiver.respond = lambda request: Reply(500) if "completed" in request.body else Reply(200)
        endpoint_create(company=company, url=f"{receiver.url}/hook", events=["jobs.*"])
        for reason, n in (
            (FailureReason.VALIDATION_FAILURE, 3),
            (FailureReason.ACCOUNTING_SYSTEM_RATE_LIMIT, 1),
        ):
            for _ in range(n):
                job = job_in_status(JobStatus.PROCESSING, company=company)
                services.job_fail(job_id=job.pk, failure_reason=reason, message="x")
        completed = [job_in_status(JobStatus.COMPLETED, company=company) for _ in range(2)]
        old = job_in_status(JobStatus.COMPLETED, company=company)  # 10 days ago: 30 d only
        Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
        run_relay()
        for delivery in WebhookDelivery.objects.all():
            deliver(delivery.pk)
    assert completed
    page.goto(f"{base}/admin/?window=7d")
    trends = page.locator("#trends")
    expect(trends.locator("a.jt-current")).to_have_text("7d")
    outcomes = page.locator("#trend-outcomes")
    expect(outcomes.locator('tr[data-outcome="validation_failure"] td.jt-num').first).to_have_text(
        "3"
    )
    rate = outcomes.locator('tr[data-outcome="accounting_system_rate_limit"]')
    expect(rate.locator("td.jt-num").first).to_have_text("1")
    expect(rate.locator(".jt-code")).to_have_attribute("title", "Accounting System Rate Limit")
    expect(outcomes.locator('tr[data-outcome="completed"] td.jt-num').first).to_have_text("2")
    assert trends.locator("svg rect.jt-seg").count() >= 3
    # one row per endpoint: delivered / retrying / failed and the success rate
    row = page.locator("#trend-deliveries tbody tr")
    expect(row).to_have_count(1)
    delivered = WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count()
    retrying = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()
    assert delivered and retrying
    expect(row).to_contain_text(f"{delivered} / {retrying} / 0")
    expect(row).to_contain_text("100 %")  # none failed for good: retrying ones are not counted
    # and per day: a bar for each of the 7 days, today's holding every delivery (made now)
    bars = row.locator("svg.jt-series g.jt-bucket")
    expect(bars).to_have_count(7)
    today = bars.last
    expect(today).to_have_attribute("data-delivered", str(delivered))
    expect(today).to_have_attribute("data-pending", str(retrying))
    expect(today).to_have_attribute("data-failed", "0")
    assert today.locator("rect.jt-seg").count() == 2  # delivered and retrying, stacked
    assert bars.first.locator("rect.jt-seg").count() == 0  # an empty day: a baseline only
    box = today.locator("rect.jt-seg").first.bounding_box()
    assert box and box["height"] > 5 and box["width"] > 10  # drawn, not collapsed
    expect(today.locator("title")).to_contain_text(f"{delivered} delivered, {retrying} pending")

    page.locator("#trend-windows a", has_text="30d").click()
    expect(page).to_have_url(f"{base}/admin/?window=30d")
    expect(outcomes.locator('tr[data-outcome="completed"] td.jt-num').first).to_have_text("3")
    expect(row.locator("svg.jt-series g.jt-bucket")).to_have_count(30)
    outcomes_link = outcomes.locator('tr[data-outcome="validation_failure"] a')
    with page.expect_navigation():
        outcomes_link.click()
    assert "failure_reason__exact=validation_failure" in page.url
    expect(page.locator("#result_list tbody tr")).to_have_count(3)


def test_operations_panel_heartbeats_backlog_broker(wide: Page, live_server: Any) -> None:
    page, base = wide, live_server.url
    heartbeat_record(name="beat", hostname="beat-host")
    heartbeat_record(name="worker", hostname="worker-host")
    Heartbeat.objects.filter(name="worker").update(beat_at=timezone.now() - timedelta(minutes=10))
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/hook", events=["jobs.*"])
    job_in_status(JobStatus.PROCESSING, company=company)
    run_relay()
    due = WebhookDelivery.objects.count()
    assert due >= 2  # jobs.create and jobs.started, due now
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=2))

    page.goto(f"{base}/admin/")
    panel = page.locator("#ops-panel")
    expect(panel.locator("#heartbeat-beat .jt-badge")).to_have_text("ok")
    expect(panel.locator("#heartbeat-beat")).to_contain_text("UTC")
    expect(panel.locator("#heartbeat-worker .jt-badge")).to_have_text("stale")
    expect(panel.locator("#heartbeat-worker")).to_contain_text("10 minutes ago")
    expect(panel.locator("#broker .jt-badge")).to_have_text("reachable")
    expect(panel.locator("#backlog-deliveries")).to_contain_text(str(due))
    expect(panel.locator("#backlog-deliveries")).to_contain_text("2 minutes ago")
    expect(panel.locator("#backlog-reports strong")).to_have_text("0")


def test_dashboard_refreshes_while_jobs_move(
    wide: Page, live_server: Any, fast_refresh: int
) -> None:
    page, base = wide, live_server.url
    company = CompanyFactory()
    job = JobFactory(company=company)  # pending: something is moving
    run_relay()
    page.goto(f"{base}/admin/")
    expect(page.locator("#jobtrail-live")).to_have_attribute("hx-get", "/admin/dashboard/live/")
    expect(page.locator("#jobs-24h h2")).to_contain_text("1 jobs")
    JobFactory(company=company)
    expect(page.locator("#jobs-24h h2")).to_contain_text("2 jobs")  # without a reload
    # nothing moving any more: the region comes back without polling
    for pending in Job.objects.filter(status=JobStatus.PENDING):
        services.job_cancel(job_id=pending.pk, actor=None, message="done")
    run_relay()
    expect(page.locator("#live-status")).to_contain_text("Not refreshing")
    expect(page.locator("#jobtrail-live")).not_to_have_attribute("hx-get", "/admin/dashboard/live/")
    assert job.pk
