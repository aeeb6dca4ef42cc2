"""Issue 13's console in Debian's Chromium against the real stack: gunicorn and a Celery worker.

One Stack (tests/e2e/stack.py: Redis, gunicorn, a Celery worker; no beat, so nothing is sent
unless a page asks for it) serves the whole module; the tests are transactional so its processes
see their rows. Each test signs in through the login form and drives the pages:

- fix it now: a retrying delivery redelivered from its page, a test event sent from an
  endpoint's page, a job's hand-off re-sent from its page, each reaching a real local receiver
  through the worker; each manual action (and a cancel) in the objects' History with the user;
- the delivery page: a collapsible, indented, escaped payload; each attempt's URL, headers
  (signature redacted), answer headers, duration and exact times;
- delivery search (job code, any case) and its company, created and last-attempt filters;
- the audit trail's pages: no Save or Delete buttons, no "Delete selected", no delete page.

The Content-Security-Policy check of the ``page`` fixture (tests/admin/conftest.py) applies.
"""

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect
from standardwebhooks.webhooks import Webhook

from jobs import services
from jobs.ingest import push_ingest
from jobs.models import Job, JobStatus, UnmatchedPush
from reports.models import Report
from reports.services import report_build
from tests.admin.browser import ROWS, login, search, success_message
from tests.e2e.stack import Stack, wait_until
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.live import call_failed
from tests.receiver import Receiver, Reply, running_receiver
from tests.relay import run_relay
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import endpoint_origin
from webhooks.sending import deliver
from webhooks.services import endpoint_create

# the stack's processes share the test database: PostgreSQL (SQLite's is in memory)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

WORKER_TIMEOUT = 20  # seconds the worker has to reach the receiver (a bound, not a measurement)
EXACT_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


# --- the stack ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running_stack(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Redis, gunicorn and a Celery worker on the test database, for the whole module."""
    stack = Stack(workdir=tmp_path_factory.mktemp("console-stack"))
    try:
        stack.start(beat=False)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def web_used() -> list[bool]:
    return []


@pytest.fixture
def web(
    running_stack: Stack,
    web_used: list[bool],
    transactional_db: None,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """The stack's base URL; its processes' logs are printed when the test fails.

    Gunicorn is restarted for each test but the first: the previous test's flush recreated the
    content types (new ids) that its processes cached, and the admin log refers to them.
    """
    if web_used:
        running_stack.restart_web()
    web_used.append(True)
    yield running_stack.api
    if call_failed(request):
        print(running_stack.dump_logs())


@pytest.fixture
def staff(page: Page, web: str, superuser: Any) -> Page:
    """A page signed in (through the login form) on the stack's gunicorn as the superuser."""
    login(page, web, superuser.username)
    return page


def delivered_to(receiver: Receiver, count: int) -> list[Any]:
    """Wait (bounded) until the receiver has ``count`` requests; return them."""
    wait_until(lambda: len(receiver.requests) >= count, WORKER_TIMEOUT, f"{count} request(s)")
    return list(receiver.requests)


def settled(delivery: WebhookDelivery, status: str) -> WebhookDelivery:
    """Wait (bounded) until the worker has recorded the attempt's outcome on the row."""
    wait_until(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == status,
        WORKER_TIMEOUT,
        f"the delivery to be {status}",
    )
    return WebhookDelivery.objects.get(pk=delivery.pk)


def attempt_log(delivery: WebhookDelivery) -> list[tuple[int, str, int | None]]:
    return list(
        delivery.attempt_log.order_by("number").values_list("number", "trigger", "status_code")
    )


def delivery_url(web: str, delivery: WebhookDelivery) -> str:
    return f"{web}/admin/webhooks/webhookdelivery/{delivery.pk}/change/"


def history_rows(page: Page) -> list[str]:
    """The History page's rows: date, user, action (one string per row)."""
    expect(page.locator("#change-history")).to_be_visible()
    return page.locator("#change-history tbody tr").all_inner_texts()


def retrying_delivery(receiver: Receiver, company_name: str = "Retrying") -> WebhookDelivery:
    """A jobs.create delivery whose first attempt got a 500; its next attempt 10 h away."""
    receiver.default = Reply(500, body="down")
    company = CompanyFactory(name=company_name)
    endpoint_create(company=company, url=receiver.url + "/hook", events=["jobs.create"])
    job = JobFactory(company=company)
    run_relay()
    delivery = WebhookDelivery.objects.get(object_id=str(job.pk))
    deliver(delivery.pk)  # attempt 1 of the schedule, here: answered 500
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=10), dispatched_at=None
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    return delivery


def integration_job(receiver: Receiver) -> tuple[Job, WebhookDelivery]:
    """A pending job whose hand-off (jobs.create to the integration endpoint) was delivered."""
    company = CompanyFactory(name="Integrated")
    endpoint_create(company=company, url=receiver.url + "/int", role="integration")
    job = JobFactory(company=company)
    run_relay()
    handoff = WebhookDelivery.objects.get(handoff=True, object_id=str(job.pk))
    deliver(handoff.pk)
    assert WebhookDelivery.objects.get(pk=handoff.pk).status == DeliveryStatus.DELIVERED
    return job, handoff


# --- 1. fix it now: redeliver, test event, hand-off, through the worker ------------------------


def test_a_retrying_delivery_redelivered_from_its_page_reaches_the_receiver_through_the_worker(
    staff: Page, web: str
) -> None:
    page = staff
    with running_receiver() as receiver:
        delivery = retrying_delivery(receiver)
        receiver.default = Reply(200)  # the customer fixed their receiver
        page.goto(delivery_url(web, delivery))
        expect(page.locator(".field-status")).to_contain_text("Pending")
        expect(page.locator(".field-next_attempt")).to_contain_text("from now")
        page.click("#redeliver")
        expect(page).to_have_url(delivery_url(web, delivery))
        assert "its next attempt is due now (schedule kept)" in success_message(page)

        first, second = delivered_to(receiver, 2)
        assert second.path == "/hook" and second.json["event"]["events_id"] == "jobs.create"
        assert second.headers["webhook-id"] == first.headers["webhook-id"]  # the same event
        delivery = settled(delivery, DeliveryStatus.DELIVERED)

    # the schedule's next attempt, made now: counted as attempt 2 of the schedule, not reset
    assert attempt_log(delivery) == [(1, "scheduled", 500), (2, "scheduled", 200)]
    assert delivery.attempts == 2 and delivery.next_attempt_at is None
    page.reload()
    expect(page.locator(".field-status")).to_contain_text("Delivered")
    expect(page.locator(".field-delivered")).to_have_text(EXACT_TIME)
    outcomes = page.locator("td.field-outcome")
    expect(outcomes).to_have_count(2)
    expect(outcomes.nth(0)).to_have_text("HTTP 500")
    expect(outcomes.nth(1)).to_have_text("200 ok")
    job = Job.objects.get(pk=delivery.object_id)
    page.click("#delivery-job")  # the delivery's job, by its code
    expect(page).to_have_url(f"{web}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator("#deliveries tbody tr")).to_contain_text("delivered")


def test_send_a_test_event_from_the_endpoint_page_through_the_worker(staff: Page, web: str) -> None:
    page = staff
    with running_receiver() as receiver:
        company = CompanyFactory(name="Tested")
        endpoint = endpoint_create(company=company, url=receiver.url + "/hook", events=["jobs.*"])
        endpoint_url = f"{web}/admin/webhooks/webhookendpoint/{endpoint.pk}/change/"
        page.goto(endpoint_url)
        page.click("#send-test-event")
        expect(page).to_have_url(endpoint_url)
        assert success_message(page).startswith("1 test event queued")

        (request,) = delivered_to(receiver, 1)
        assert request.path == "/hook" and request.json["event"]["events_id"] == "webhooks.test"
        Webhook(endpoint.secret).verify(request.body, request.headers)  # signed as usual
        delivery = settled(WebhookDelivery.objects.get(endpoint=endpoint), "delivered")
    assert attempt_log(delivery) == [(1, "manual", 200)]

    page.locator(".messagelist a", has_text="see the deliveries").click()
    expect(page).to_have_url(re.compile(r"/admin/webhooks/webhookdelivery/\?events_id=webhooks"))
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS).locator(".jt-delivered")).to_have_text("delivered")


def test_resend_a_jobs_handoff_from_its_page_through_the_worker(staff: Page, web: str) -> None:
    page = staff
    with running_receiver() as receiver:
        job, handoff = integration_job(receiver)
        job_url = f"{web}/admin/jobs/job/{job.pk}/change/"
        page.goto(job_url)
        expect(page.locator("#handoff-state")).to_have_text("delivered")
        page.click("#resend-handoff")
        expect(page).to_have_url(job_url)
        assert success_message(page) == "Re-sent the hand-off (one manual attempt)."

        first, second = delivered_to(receiver, 2)
        assert [first.path, second.path] == ["/int", "/int"]
        assert second.json["event"]["events_id"] == "jobs.create"
        assert second.json["data"]["id"] == str(job.pk)
        assert second.headers["webhook-id"] == first.headers["webhook-id"]
        wait_until(
            lambda: handoff.attempt_log.count() == 2, WORKER_TIMEOUT, "the manual attempt logged"
        )
        handoff = settled(handoff, DeliveryStatus.DELIVERED)
    assert attempt_log(handoff) == [(1, "scheduled", 200), (2, "manual", 200)]
    page.reload()
    expect(page.locator("#handoff")).to_contain_text("2 attempts")


# --- 2. every manual action in the objects' History, with the staff user ------------------------


def test_manual_actions_in_the_browser_are_in_the_history_with_the_user(
    staff: Page, web: str, superuser: Any
) -> None:
    page, user = staff, superuser.username
    with running_receiver() as receiver:
        job, handoff = integration_job(receiver)
        endpoint = handoff.endpoint

        page.goto(delivery_url(web, handoff))
        page.click("#redeliver")
        success_message(page)
        delivered_to(receiver, 2)  # the redelivery done (else the re-send finds it pending)
        wait_until(lambda: handoff.attempt_log.count() == 2, WORKER_TIMEOUT, "attempt 2 logged")
        settled(handoff, DeliveryStatus.DELIVERED)
        page.goto(f"{web}/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
        page.click("#send-test-event")
        success_message(page)
        page.goto(f"{web}/admin/jobs/job/{job.pk}/change/")
        page.click("#resend-handoff")
        success_message(page)
        page.click("#cancel-job")
        page.fill("#id_message", "Wrong customer.")
        page.click("#confirm-cancel")
        assert success_message(page) == "Canceled 1 job."

        page.click("a.historylink")  # the job page's History
        expect(page).to_have_url(f"{web}/admin/jobs/job/{job.pk}/history/")
        rows = history_rows(page)
        assert len(rows) == 3, rows
        assert all(user in row for row in rows)
        assert "Redeliver: jobs.create to " in rows[0]
        target = endpoint_origin(endpoint)  # id and origin: no path or query in a job's history
        assert f"Re-sent the hand-off (one manual attempt) to {target}." in rows[1]
        assert "Canceled: Wrong customer." in rows[2]

        page.goto(delivery_url(web, handoff))
        page.click("a.historylink")
        (row,) = history_rows(page)
        assert user in row and "queued for redelivery (one manual attempt)" in row

        page.goto(f"{web}/admin/webhooks/webhookendpoint/{endpoint.pk}/change/")
        page.click("a.historylink")
        (row,) = history_rows(page)
        assert user in row and "Sent a test event (msg_test_" in row

        # the admin's index lists them as this user's recent actions
        page.goto(f"{web}/admin/")
        recent = page.locator("#recent-actions-module li")
        expect(recent).to_have_count(5)
        delivered_to(receiver, 4)  # the worker sent what was queued (hand-off x3, test event)


# --- 3. the delivery page: payload, attempts, exact times ---------------------------------------


def test_delivery_page_payload_and_what_each_attempt_sent_and_received(
    staff: Page, web: str
) -> None:
    page = staff
    with running_receiver() as receiver:
        receiver.reply(
            Reply(503, body="busy", headers={"Retry-After": "7"}),
            Reply(200, body="ok", headers={"X-Receiver": "yes"}),
        )
        company = CompanyFactory(name="Escaped")
        endpoint = endpoint_create(company=company, url=receiver.url + "/hook", events=["*"])
        job = JobFactory(
            company=company, metadata={"note": "<script>alert('x')</script>", "n": [1, 2]}
        )
        run_relay()
        delivery = WebhookDelivery.objects.get(object_id=str(job.pk), events_id="jobs.create")
        deliver(delivery.pk)  # 503
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        deliver(delivery.pk)  # 200
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == DeliveryStatus.DELIVERED
    signature = receiver.requests[0].headers["webhook-signature"]

    page.goto(delivery_url(web, delivery))
    payload = page.locator("details.jt-payload")
    body = payload.locator("pre")
    expect(body).to_be_visible()  # open by default
    text = body.inner_text()
    assert json.loads(text) == delivery.payload
    assert text.startswith('{\n  "data": {\n    "')  # indented, keys sorted
    assert '"note": "<script>alert(\'x\')</script>"' in text  # shown as text
    assert payload.locator("script").count() == 0  # not markup
    payload.locator("summary").click()
    expect(body).to_be_hidden()
    payload.locator("summary").click()
    expect(body).to_be_visible()

    rows = page.locator("tbody tr:has(td.field-exchange)")
    expect(rows).to_have_count(2)
    for n, (code_text, answer_header) in enumerate(
        [("HTTP 503", "Retry-After: 7"), ("200 ok", "X-Receiver: yes")]
    ):
        row = rows.nth(n)
        expect(row.locator("td.field-outcome")).to_have_text(code_text)
        expect(row.locator("td.field-duration")).to_have_text(re.compile(r"^\s*\d+ ms\s*$"))
        expect(row.locator("td.field-started")).to_have_text(EXACT_TIME)
        exchange = row.locator("details.jt-exchange")
        expect(exchange.locator("summary")).to_contain_text(f"POST {endpoint.url}")
        expect(exchange.locator("pre").first).to_be_hidden()  # collapsed until asked
        exchange.locator("summary").click()
        sent, answered = exchange.locator("pre").nth(0), exchange.locator("pre").nth(1)
        expect(sent).to_be_visible()
        expect(sent).to_contain_text(f"webhook-id: {delivery.event_id}")
        expect(sent).to_contain_text(re.compile(r"webhook-signature: \[redacted\]", re.I))
        expect(sent).not_to_contain_text(signature.split(",", 1)[-1])
        expect(answered).to_contain_text(answer_header)

    for field in ("created", "last_attempt", "delivered", "updated"):
        expect(page.locator(f".field-{field} time").first).to_have_text(EXACT_TIME)


# --- 4. delivery search and windows ---------------------------------------------------------------


def listed_deliveries(page: Page) -> set[str]:
    page.wait_for_load_state()
    return set(
        page.locator("#result_list tbody input.action-select").evaluate_all(
            "boxes => boxes.map(b => b.value)"
        )
    )


def apply_window(page: Page, title: str, start: str, before: str = "") -> None:
    page.get_by_label(f"{title} from").fill(start)
    page.get_by_label(f"{title} before").fill(before)
    with page.expect_navigation():
        page.get_by_label(f"{title} from").press("Enter")


def test_delivery_search_company_filter_and_time_windows(staff: Page, web: str) -> None:
    page = staff
    acme, other = CompanyFactory(name="Acme Deliveries"), CompanyFactory(name="Other Deliveries")
    for company in (acme, other):
        endpoint_create(company=company, url="http://127.0.0.1:9/hook", events=["jobs.create"])
    mine = JobFactory(company=acme, code="INV-77")
    prefix = JobFactory(company=acme, code="INV-778")  # the code search is exact, any case
    theirs = JobFactory(company=other, code="PAY-1")
    run_relay()
    by_job = {
        str(job.pk): WebhookDelivery.objects.get(object_id=str(job.pk))
        for job in (mine, prefix, theirs)
    }
    now = timezone.now().replace(microsecond=0)
    days_ago = {mine: 3, prefix: 1, theirs: 0}
    for job, days in days_ago.items():
        WebhookDelivery.objects.filter(object_id=str(job.pk)).update(
            created_at=now - timedelta(days=days, minutes=5),
            last_attempt_at=now - timedelta(days=days),
        )
    ids = {job: str(by_job[str(job.pk)].pk) for job in (mine, prefix, theirs)}

    page.goto(f"{web}/admin/webhooks/webhookdelivery/")
    assert listed_deliveries(page) == set(ids.values())
    search(page, "inv-77")
    assert listed_deliveries(page) == {ids[mine]}
    search(page, "Pay-1")
    assert listed_deliveries(page) == {ids[theirs]}

    # the company filter: the admin's autocomplete, picked by typing the name
    page.goto(f"{web}/admin/webhooks/webhookdelivery/")
    page.locator("#company-filter-form .select2-selection").click()
    page.locator(".select2-search__field").fill("Acme")
    option = page.locator(".select2-results__option", has_text="Acme Deliveries")
    with page.expect_navigation():
        option.click()
    expect(page).to_have_url(re.compile(rf"[?&]company__id__exact={acme.pk}"))
    assert listed_deliveries(page) == {ids[mine], ids[prefix]}

    # created in the last two days (times in the staff user's zone: UTC here)
    day = "%Y-%m-%d %H:%M"
    apply_window(page, "Created", (now - timedelta(days=2)).strftime(day))
    expect(page).to_have_url(re.compile(r"[?&]created_from="))
    expect(page).to_have_url(re.compile(rf"[?&]company__id__exact={acme.pk}"))  # kept
    assert listed_deliveries(page) == {ids[prefix]}

    # last attempt between 4 and 2 days ago, every company
    page.goto(f"{web}/admin/webhooks/webhookdelivery/")
    apply_window(
        page,
        "Last attempt",
        (now - timedelta(days=4)).strftime(day),
        (now - timedelta(days=2)).strftime(day),
    )
    assert listed_deliveries(page) == {ids[mine]}
    apply_window(page, "Last attempt", (now - timedelta(hours=1)).strftime(day))
    assert listed_deliveries(page) == {ids[theirs]}


# --- 5. the audit trail cannot be edited or deleted from the console ---------------------------


def audit_trail() -> dict[str, Any]:
    """One row of every audit-trail model the console shows."""
    company = CompanyFactory(name="Audited")
    endpoint = endpoint_create(
        company=company, url="http://127.0.0.1:9/hook", events=["jobs.completed"]
    )
    job = job_in_status(JobStatus.COMPLETED, company=company)
    result, _ = services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id="0123456789abcdef01234567", status="success"
        ),
    )
    push_ingest(
        company=company,
        data=services.PushResultData(
            push_communication_id="fedcba9876543210fedcba98", status="success"
        ),
    )
    run_relay()
    report_build(job_id=job.pk)
    delivery = WebhookDelivery.objects.get()
    deliver(delivery.pk)  # nothing listens on port 9: an attempt with no answer
    return {
        "jobs/job": job,
        "jobs/pushresult": result,
        "jobs/unmatchedpush": UnmatchedPush.objects.get(),
        "webhooks/webhookdelivery": delivery,
        "webhooks/webhookendpoint": endpoint,
        "reports/report": Report.objects.get(job=job),
    }


def test_the_audit_trail_has_no_save_delete_or_delete_page(staff: Page, web: str) -> None:
    page = staff
    rows = audit_trail()
    for model, obj in rows.items():
        base = f"{web}/admin/{model}/"
        page.goto(f"{base}{obj.pk}/change/")
        expect(page.locator("#content-main")).to_be_visible()
        expect(page.locator(".deletelink")).to_have_count(0)
        if model != "webhooks/webhookendpoint":  # an endpoint is edited (paused), never deleted
            expect(page.locator(".submit-row input, .submit-row button")).to_have_count(0)
        page.goto(base)
        expect(page.locator(ROWS)).to_have_count(1)
        expect(page.locator('select[name=action] option[value="delete_selected"]')).to_have_count(0)
        response = page.goto(f"{base}{obj.pk}/delete/")
        assert response is not None
        assert response.status in (403, 404) or not response.url.endswith("/delete/"), model
        expect(page.locator("body")).not_to_contain_text("Are you sure")
    assert Job.objects.filter(pk=rows["jobs/job"].pk).exists()
    assert WebhookEndpoint.objects.filter(pk=rows["webhooks/webhookendpoint"].pk).exists()

    # attempts: shown inline on their delivery, never deletable there
    page.goto(f"{web}/admin/webhooks/webhookdelivery/{rows['webhooks/webhookdelivery'].pk}/change/")
    expect(page.locator("td.field-outcome")).to_have_count(1)
    expect(page.locator("input[name$='-DELETE']")).to_have_count(0)
    # job events and attempts have no admin pages of their own (nothing to edit or delete)
    for model in ("jobs/jobevent", "webhooks/webhookattempt"):
        response = page.goto(f"{web}/admin/{model}/")
        assert response is not None and response.status == 404, model
