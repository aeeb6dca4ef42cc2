"""The staff console in a real browser: Playwright drives headless Chromium against live_server.

Covers login, the job list (filters, search), the job page and its timeline, cancelling (one
job, a selection, everything matching a filter), permissions, webhook redelivery and the
dashboard. No Celery worker runs here: deliveries are sent by calling ``deliver`` in the test
(test_console_browser.py drives the console on gunicorn with a real Celery worker).
"""

import re
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from jobs.models import EventSource, Job, JobEvent, JobStatus
from tests.admin.browser import (
    PASSWORD,
    ROW_CODES,
    ROWS,
    expect_rows,
    job_list,
    login,
    run_action,
    search,
    success_message,
)
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.receiver import Receiver, Reply, running_receiver
from tests.relay import run_relay
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import endpoint_create

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# the type filter's text box (once a filter is applied, other forms carry type= as hidden input)
TYPE_INPUT = "#changelist-filter input[type=text][name=type]"


# --- helpers (the fixtures and the shared helpers: tests/admin/conftest.py and browser.py) ------


def filter_by_type(page: Page, value: str) -> None:
    page.fill(TYPE_INPUT, value)
    with page.expect_navigation():
        page.press(TYPE_INPUT, "Enter")
    expect(page).to_have_url(re.compile(rf"[?&]type={re.escape(quote_plus(value))}(&|$)"))
    expect(page.locator(TYPE_INPUT)).to_have_value(value)


def reload_job(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


# --- 1. login -------------------------------------------------------------------------------


def test_login_through_the_admin_form(page: Page, live_server: Any, superuser: Any) -> None:
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))

    page.fill("#id_username", superuser.username)
    page.fill("#id_password", "not-the-password")
    page.click("#login-form input[type=submit]")
    expect(page.locator(".errornote")).to_contain_text("correct username and password")

    page.fill("#id_username", superuser.username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.locator("#user-tools")).to_contain_text(superuser.username)
    expect(page.locator("#site-name")).to_contain_text("Jobtrail")
    expect(page.locator("#jobtrail-dashboard")).to_be_visible()


# --- 2. job list: filters and search ----------------------------------------------------------


def test_job_list_filters_and_search(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    company = CompanyFactory(name="Filterable")
    processing = [job_in_status(JobStatus.PROCESSING, company=company) for _ in range(2)]
    pending = JobFactory(company=company)
    bulk = JobFactory(company=company, type="bulk_update")
    done = job_in_status(JobStatus.COMPLETED, company=company)
    failed = job_in_status(JobStatus.FAILED, company=company)

    job_list(page, base)
    expect_rows(page, *processing, pending, bulk, done, failed)

    # status filter: the "Processing" link of the status filter
    status_filter = page.locator('#changelist-filter details[data-filter-title="status"]')
    status_filter.get_by_role("link", name="Processing", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]status__exact=processing"))
    expect_rows(page, *processing)

    # the free-text type filter (press Enter in its input)
    job_list(page, base)
    filter_by_type(page, "bulk_update")
    expect_rows(page, bulk)

    # type filter combined with the status filter keeps both
    job_list(page, base, "?status__exact=processing")
    filter_by_type(page, "export")
    expect(page).to_have_url(re.compile(r"[?&]status__exact=processing"))
    expect_rows(page, *processing)

    # search by exact code, then by exact UUID, then something that matches nothing
    job_list(page, base)
    search(page, done.code)
    expect_rows(page, done)
    search(page, str(failed.pk))
    expect_rows(page, failed)
    search(page, "JOB-NOSUCHCODE")
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("#changelist-form")).to_contain_text("0 jobs")


def test_job_search_any_case_prefix_company_and_reason_codes(
    admin_page: Page, live_server: Any
) -> None:
    page, base = admin_page, live_server.url
    acme, other = CompanyFactory(name="Acme Books"), CompanyFactory(name="Other Ltd")
    first = JobFactory(company=acme, code="INV-2026-0001")
    second = JobFactory(company=other, code="INV-2026-0002")
    third = JobFactory(company=other, code="PAY-1")
    failed = job_in_status(JobStatus.FAILED, company=other, code="FAIL-1")  # service_timeout

    job_list(page, base)
    search(page, "inv-2026-0001")
    expect_rows(page, first)
    search(page, "inv-2026")
    expect_rows(page, first, second)
    search(page, "acme")
    expect_rows(page, first)
    search(page, "other")
    expect_rows(page, second, third, failed)

    job_list(page, base)
    reason = page.locator("#result_list td.field-reason span.jt-code")
    expect(reason).to_have_text("service_timeout")
    expect(reason).to_have_attribute("title", "Service Timeout")
    option = page.locator(
        '#changelist-filter details[data-filter-title="failure reason"] a',
        has_text="service_timeout",
    )
    expect(option).to_have_attribute("title", "Service Timeout")
    option.click()
    expect(page).to_have_url(re.compile(r"[?&]failure_reason__exact=service_timeout"))
    expect_rows(page, failed)
    created = page.locator("#result_list td.field-created time").first
    expect(created).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))


# --- 3 + 4. job page, timeline, cancel from the job page -----------------------------------


def test_job_page_timeline_and_cancel(admin_page: Page, live_server: Any, superuser: Any) -> None:
    page, base = admin_page, live_server.url
    job = job_in_status(JobStatus.PROCESSING, company=CompanyFactory(name="Cancelable"))
    other = job_in_status(JobStatus.PROCESSING, company=job.company)

    job_list(page, base)
    page.locator(ROW_CODES, has_text=job.code).click()
    job_url = f"{base}/admin/jobs/job/{job.pk}/change/"
    expect(page).to_have_url(job_url)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("#1 created")
    expect(timeline).to_contain_text("#2 started")
    expect(timeline.locator("li")).to_have_count(2)
    expect(page.locator(".jt-status-line")).to_contain_text("processing")

    page.click("#cancel-job")
    expect(page).to_have_url(f"{base}/admin/jobs/job/{job.pk}/cancel/")
    summary = page.locator("#cancel-summary")
    expect(summary).to_contain_text("1 job will be canceled")
    expect(summary).not_to_contain_text("skipped")
    expect(page.locator("#cancel-confirmation ul")).to_contain_text(job.code)
    page.fill("#id_message", "Customer asked us to stop.")
    page.click("#confirm-cancel")

    expect(page).to_have_url(job_url)
    assert success_message(page) == "Canceled 1 job."
    status_line = page.locator(".jt-status-line")
    expect(status_line).to_contain_text("failed")
    expect(status_line).to_contain_text("canceled_by_user")
    expect(status_line).to_contain_text("Customer asked us to stop.")
    expect(timeline.locator("li")).to_have_count(3)
    last = timeline.locator("li").last
    expect(last).to_contain_text("#3 failed")
    expect(last).to_contain_text("canceled_by_user")
    expect(last).to_contain_text("Customer asked us to stop.")
    expect(last).to_contain_text("source admin")
    expect(last).to_contain_text(f"by {superuser.username}")
    expect(page.locator("#cancel-job")).to_have_count(0)  # finished: nothing to cancel

    job = reload_job(job)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, "canceled_by_user")
    assert job.message == "Customer asked us to stop."
    event = JobEvent.objects.filter(job=job).order_by("-sequence").first()
    assert event is not None
    assert (event.sequence, event.status, event.source) == (3, "failed", EventSource.ADMIN)
    assert event.actor_id == superuser.pk
    assert reload_job(other).status == JobStatus.PROCESSING


# --- 5. bulk cancel from the list ---------------------------------------------------------------


def test_bulk_cancel_selected_jobs(admin_page: Page, live_server: Any, superuser: Any) -> None:
    page, base = admin_page, live_server.url
    company = CompanyFactory(name="Bulk")
    pending = JobFactory(company=company)
    processing = job_in_status(JobStatus.PROCESSING, company=company)
    finished = job_in_status(JobStatus.COMPLETED, company=company)
    bystander = job_in_status(JobStatus.PROCESSING, company=company)

    job_list(page, base)
    for job in (pending, processing, finished):
        page.check(f'input.action-select[value="{job.pk}"]')
    expect(page.locator(".action-counter")).to_contain_text("3 of 4 selected")
    run_action(page, "cancel_selected")

    summary = page.locator("#cancel-summary")
    expect(summary).to_contain_text("2 jobs will be canceled")
    expect(summary).to_contain_text("1 already finished job will be skipped")
    preview = page.locator("#cancel-confirmation ul")
    expect(preview).to_contain_text(pending.code)
    expect(preview).to_contain_text(processing.code)
    expect(preview).not_to_contain_text(finished.code)
    expect(preview).not_to_contain_text(bystander.code)
    page.click("#confirm-cancel")

    expect(page).to_have_url(f"{base}/admin/jobs/job/")
    assert success_message(page) == "Canceled 2 jobs. 1 already finished and skipped."
    for job in (pending, processing):
        job = reload_job(job)
        assert (job.status, job.failure_reason) == (JobStatus.FAILED, "canceled_by_user")
        event = job.events.order_by("-sequence").first()
        assert event is not None
        assert (event.source, event.actor_id) == (EventSource.ADMIN, superuser.pk)
    assert reload_job(finished).status == JobStatus.COMPLETED
    assert reload_job(bystander).status == JobStatus.PROCESSING


def test_bulk_cancel_everything_matching_the_filter(
    admin_page: Page, live_server: Any, superuser: Any
) -> None:
    page, base = admin_page, live_server.url
    company = CompanyFactory(name="Nightly")
    matching = [JobFactory(company=company, type="nightly_sync") for _ in range(52)]
    matching_finished = job_in_status(JobStatus.COMPLETED, company=company, type="nightly_sync")
    others = [JobFactory(company=company), job_in_status(JobStatus.PROCESSING, company=company)]

    job_list(page, base)
    filter_by_type(page, "nightly_sync")
    expect(page.locator(ROWS)).to_have_count(50)  # one page of 53

    page.check("#action-toggle")
    question = page.locator(".actions .question a")
    expect(question).to_be_visible()
    expect(question).to_have_text("Select all 53 jobs")
    question.click()
    expect(page.locator(".actions .all")).to_be_visible()
    expect(page.locator(".actions .all")).to_contain_text("All 53 selected")
    expect(page.locator("input.select-across")).to_have_value("1")
    run_action(page, "cancel_selected")

    summary = page.locator("#cancel-summary")
    expect(summary).to_contain_text("52 jobs will be canceled")
    expect(summary).to_contain_text("1 already finished job will be skipped")
    expect(page.locator("#cancel-confirmation ul")).to_contain_text("… and 2 more.")
    page.fill("#id_message", "Nightly sync retired.")
    page.click("#confirm-cancel")

    assert success_message(page) == "Canceled 52 jobs. 1 already finished and skipped."
    expect(page).to_have_url(re.compile(r"[?&]type=nightly_sync"))
    canceled = Job.objects.filter(pk__in=[j.pk for j in matching])
    assert canceled.count() == 52
    assert set(canceled.values_list("status", "failure_reason", "message")) == {
        (JobStatus.FAILED, "canceled_by_user", "Nightly sync retired.")
    }
    assert (
        JobEvent.objects.filter(
            job__in=canceled, source=EventSource.ADMIN, actor=superuser, status="failed"
        ).count()
        == 52
    )
    assert reload_job(matching_finished).status == JobStatus.COMPLETED
    assert [reload_job(j).status for j in others] == [JobStatus.PENDING, JobStatus.PROCESSING]


# --- 6. permissions -------------------------------------------------------------------------


def test_staff_without_cancel_permission_cannot_cancel(
    page: Page, live_server: Any, django_user_model: Any
) -> None:
    base = live_server.url
    viewer = django_user_model.objects.create_user(
        username="viewer", password=PASSWORD, is_staff=True
    )
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    job = job_in_status(JobStatus.PROCESSING, company=CompanyFactory(name="Guarded"))
    login(page, base, viewer.username)

    page.goto(f"{base}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator("#timeline")).to_contain_text("#2 started")  # the page did render
    expect(page.locator("#cancel-job")).to_have_count(0)

    job_list(page, base)
    expect_rows(page, job)
    expect(page.locator('select[name=action] option[value="cancel_selected"]')).to_have_count(0)

    cancel_url = f"{base}/admin/jobs/job/{job.pk}/cancel/"
    response = page.goto(cancel_url)
    assert response is not None and response.status == 403

    # Forged requests from the signed-in browser are refused too.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    posted = page.request.post(
        cancel_url, form={"csrfmiddlewaretoken": csrf, "confirm": "yes", "message": "x"}
    )
    assert posted.status == 403
    page.request.post(
        f"{base}/admin/jobs/job/",
        form={
            "csrfmiddlewaretoken": csrf,
            "action": "cancel_selected",
            "index": "0",
            "select_across": "0",
            "_selected_action": str(job.pk),
            "confirm": "yes",
        },
    )
    assert reload_job(job).status == JobStatus.PROCESSING
    assert not JobEvent.objects.filter(job=job, source=EventSource.ADMIN).exists()


# --- 7. webhook redelivery --------------------------------------------------------------------


def failed_delivery(receiver: Receiver) -> WebhookDelivery:
    """A job's ``jobs.create`` delivery whose first attempt got a 500, then marked failed."""
    receiver.default = Reply(500, body="down")
    company = CompanyFactory(name="Hooked")
    endpoint_create(company=company, url=receiver.url + "/hook", events=["*"])
    job = JobFactory(company=company)
    run_relay()  # what the worker does after the change: fan the created event out
    delivery = WebhookDelivery.objects.get(object_id=str(job.pk))
    assert delivery.events_id == "jobs.create"
    deliver(delivery.pk)
    assert [r.path for r in receiver.requests] == ["/hook"]
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, next_attempt_at=None
    )
    delivery.refresh_from_db()
    return delivery


def deliver_now_and_check(delivery: WebhookDelivery, receiver: Receiver, attempts: int) -> None:
    """No Celery worker here: make the queued (manual) attempt ourselves, answered 200."""
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_trigger) == (DeliveryStatus.PENDING, "manual")
    receiver.default = Reply(200)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    log = list(
        WebhookAttempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "trigger", "status_code")
    )
    assert log == [(1, "scheduled", 500), (attempts, "manual", 200)]
    assert len(receiver.requests) == attempts
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # the same event


def test_redeliver_button_on_the_job_page(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    with running_receiver() as receiver:
        delivery = failed_delivery(receiver)
        job_url = f"{base}/admin/jobs/job/{delivery.object_id}/change/"
        page.goto(job_url)
        row = page.locator("#deliveries tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("jobs.create")
        expect(row).to_contain_text("failed")
        expect(row).to_contain_text("500")
        button = row.get_by_role("button", name="Redeliver")
        redeliver_url = f"{base}/admin/webhooks/webhookdelivery/{delivery.pk}/redeliver/"
        submits_to = button.evaluate("b => b.formAction")
        assert submits_to == redeliver_url, (
            "the Redeliver button submits the job's admin change form instead of its own form "
            "(a <form> nested inside the change form is dropped by the HTML parser)"
        )
        button.click()
        expect(page).to_have_url(job_url)
        assert success_message(page, "success") == (
            "Delivery jobs.create queued for redelivery (one manual attempt)."
        )

        deliver_now_and_check(delivery, receiver, attempts=2)
        page.reload()
        expect(page.locator("#deliveries tbody tr")).to_contain_text("delivered")


def test_redeliver_action_on_the_delivery_list(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    with running_receiver() as receiver:
        delivery = failed_delivery(receiver)
        page.goto(f"{base}/admin/webhooks/webhookdelivery/")
        expect(page.locator(ROWS)).to_have_count(1)
        expect(page.locator(ROWS).locator("td.field-status_badge .jt-failed")).to_have_text(
            "failed"
        )
        page.check(f'input.action-select[value="{delivery.pk}"]')
        page.select_option("select[name=action]", label="Redeliver the selected deliveries")
        page.click(".actions button[name=index]")
        assert success_message(page) == "1 delivery queued for redelivery."

        deliver_now_and_check(delivery, receiver, attempts=2)
        page.reload()
        expect(page.locator(ROWS).locator("td.field-status_badge .jt-delivered")).to_have_text(
            "delivered"
        )


# --- 8. dashboard -----------------------------------------------------------------------------


def test_dashboard_chart_cards_and_legend(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    company = CompanyFactory(name="Dashboarded")
    processing = [job_in_status(JobStatus.PROCESSING, company=company) for _ in range(3)]
    job_in_status(JobStatus.COMPLETED, company=company)
    job_in_status(JobStatus.FAILED, company=company)
    stuck = processing[0]
    Job.objects.filter(pk=stuck.pk).update(last_activity_at=timezone.now() - timedelta(hours=3))
    run_relay()  # the jobs above were relayed before the endpoint existed: no deliveries
    endpoint_create(company=company, url="http://127.0.0.1:9/hook", events=["jobs.create"])
    hooked = JobFactory(company=company)  # pending; its delivery fails (nothing on port 9)
    run_relay()
    delivery = WebhookDelivery.objects.get(object_id=str(hooked.pk))
    deliver(delivery.pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)

    page.goto(f"{base}/admin/")
    chart = page.locator("#jobs-24h")
    expect(chart.locator("svg rect").first).to_be_attached()
    assert chart.locator("svg rect").count() >= 24  # one bar (or baseline) per hour
    by_status: Counter[str] = Counter()
    for title in chart.locator("svg rect title").all_text_contents():
        status, count = re.fullmatch(r"\d\d:00 (\w+): (\d+)", title).groups()  # type: ignore[union-attr]
        by_status[status] += int(count)
    assert by_status == {"processing": 3, "completed": 1, "failed": 1, "pending": 1}
    expect(chart.locator("h2")).to_contain_text("6 jobs")

    stuck_card = page.locator("#stuck-jobs")
    expect(stuck_card).to_contain_text(stuck.code)
    expect(stuck_card).to_contain_text("1 jobs")
    for fresh in processing[1:]:
        expect(stuck_card).not_to_contain_text(fresh.code)

    failing = page.locator("#failing-endpoints")
    expect(failing).to_contain_text("http://127.0.0.1:9/hook")
    expect(failing).to_contain_text("Dashboarded")
    expect(failing.locator("tbody tr")).to_have_count(1)

    legend = chart.locator(".jt-legend a", has_text="processing")
    expect(legend).to_contain_text("3")
    legend.click()
    expect(page).to_have_url(re.compile(r"/admin/jobs/job/\?.*status__exact=processing"))
    expect(page).to_have_url(re.compile(r"[?&]created_from="))
    expect_rows(page, *processing)

    # the stuck card's link leads to the stuck filter
    page.goto(f"{base}/admin/")
    page.locator("#stuck-jobs a.jt-more").click()
    expect(page).to_have_url(re.compile(r"[?&]stuck=1"))
    expect_rows(page, stuck)


# --- 9. security: the Content-Security-Policy, the login lockout -----------------------------


def test_the_api_docs_render_under_the_content_security_policy(
    page: Page, live_server: Any
) -> None:
    response = page.goto(f"{live_server.url}/api/docs/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Jobtrail API")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/jobs/").first).to_be_visible()


def test_a_lockout_is_shown_seen_by_staff_and_lifted(
    page: Page, chromium: Browser, live_server: Any, superuser: Any, django_user_model: Any
) -> None:
    base = live_server.url
    colleague = django_user_model.objects.create_superuser(
        username="colleague", email="colleague@example.com", password=PASSWORD
    )
    staff_context = chromium.new_context()
    staff = staff_context.new_page()
    login(staff, base, colleague.username)  # signed in before the lock

    for n in range(5):
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", superuser.username)
        page.fill("#id_password", f"guess-{n}")
        page.click("#login-form input[type=submit]")
    expect(page.locator("h1")).to_have_text("Too many failed logins")
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", superuser.username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    expect(page.locator("h1")).to_have_text("Too many failed logins")

    staff.goto(f"{base}/admin/axes/accessattempt/")
    row = staff.locator(ROWS)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(superuser.username)
    expect(row).to_contain_text("Locked Out")
    staff.check("#action-toggle")
    staff.select_option("select[name=action]", "delete_selected")
    staff.click(".actions button[name=index]")
    staff.click("input[type=submit]")  # "Yes, I'm sure"
    expect(staff.locator(".messagelist li")).to_contain_text("Successfully deleted 1")
    staff_context.close()

    login(page, base, superuser.username)


def test_console_pages_ask_for_nothing_that_is_missing(admin_page: Page, live_server: Any) -> None:
    """Every request a console page makes (stylesheets, scripts, the site icon) is answered:
    the browser asked for /favicon.ico and got a 404, an error in its console on every page."""
    failed: list[str] = []
    admin_page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    for path in ("/admin/", "/admin/jobs/job/", "/admin/webhooks/webhookdelivery/"):
        admin_page.goto(f"{live_server.url}{path}")
        admin_page.wait_for_load_state("networkidle")
    assert failed == []
    icon = admin_page.locator("link[rel=icon]")
    expect(icon).to_have_count(1)
    href = icon.get_attribute("href") or ""
    served = admin_page.request.get(f"{live_server.url}{href}")
    assert served.ok and served.headers["content-type"] == "image/svg+xml"
    # pages that name no icon (the API's JSON in a browser): /favicon.ico leads to it
    assert admin_page.request.get(f"{live_server.url}/favicon.ico").ok
