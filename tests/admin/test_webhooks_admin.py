"""Webhook endpoints and deliveries in the admin: no secrets, redelivery actions."""

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import services as jobs
from tests.factories import CompanyFactory, JobFactory, UserFactory
from tests.relay import run_relay
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create, endpoint_rotate_secret

pytestmark = pytest.mark.django_db


def test_endpoint_pages_never_show_the_secret(staff: Client) -> None:
    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])
    for url in (
        reverse("admin:webhooks_webhookendpoint_changelist"),
        reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]),
    ):
        content = staff.get(url).content.decode()
        assert endpoint.secret not in content
        assert endpoint.secret.removeprefix("whsec_") not in content


@pytest.mark.parametrize("field", ["secret", "previous_secret"])
@pytest.mark.parametrize("lookup", ["startswith", "exact", "gt"])
def test_the_endpoint_list_cannot_be_filtered_on_a_secret(
    staff: Client, field: str, lookup: str
) -> None:
    """A query-string filter on the secret would list the endpoint only for the right prefix:
    the secret read out one character at a time by anyone who may view endpoints."""
    endpoint = endpoint_rotate_secret(
        endpoint=endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])
    )
    value = getattr(endpoint, field)

    response = staff.get(
        reverse("admin:webhooks_webhookendpoint_changelist"),
        {f"{field}__{lookup}": value[:12] if lookup == "startswith" else value},
    )

    assert response.status_code == 400
    assert endpoint.url not in response.content.decode()


def test_redeliver_everything_failed_since(staff: Client) -> None:
    company = CompanyFactory()
    endpoint = endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    for _ in range(3):
        JobFactory(company=company)
    run_relay()
    old, recent, other = WebhookDelivery.objects.order_by("created_at")
    WebhookDelivery.objects.update(status="failed")
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=5))
    url = reverse("admin:webhooks_webhookendpoint_changelist")
    data = {"action": "redeliver_failed_since", helpers.ACTION_CHECKBOX_NAME: [str(endpoint.pk)]}

    intermediate = staff.post(url, data)
    assert intermediate.status_code == 200
    assert "Redeliver failed deliveries" in intermediate.content.decode()

    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    done = staff.post(url, {**data, "since": since}, follow=True)
    assert "2 failed deliveries queued for redelivery." in done.content.decode()
    statuses = dict(WebhookDelivery.objects.values_list("pk", "status"))
    assert statuses == {old.pk: "failed", recent.pk: "pending", other.pk: "pending"}
    assert set(
        WebhookDelivery.objects.filter(status="pending").values_list("next_trigger", flat=True)
    ) == {"manual"}


def test_redeliver_button_needs_post_and_permission(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    JobFactory(company=company)
    run_relay()
    delivery = WebhookDelivery.objects.first()
    url = reverse("admin:webhooks_webhookdelivery_redeliver", args=[delivery.pk])
    assert staff.get(url).status_code == 405

    viewer = UserFactory(is_staff=True)
    client = Client()
    client.force_login(viewer)
    assert client.post(url).status_code == 403

    response = staff.post(url, {"next": "https://evil.example/"})
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:webhooks_webhookdelivery_change", args=[delivery.pk]
    )


def test_push_result_filters(staff: Client) -> None:
    job = JobFactory()
    for n, (data_type, service) in enumerate([("invoices", "xero"), ("bills", "quickbooks")]):
        jobs.push_result_record(
            job_id=job.pk,
            data=jobs.PushResultData(
                push_communication_id=str(n),
                status="success",
                data_type=data_type,
                service_name=service,
            ),
        )
    url = reverse("admin:jobs_pushresult_changelist")
    for query, expected in {"?data_type=bills": ["1"], "?service_name=xero": ["0"]}.items():
        response = staff.get(url + query)
        ids = [r.push_communication_id for r in response.context["cl"].result_list]
        assert ids == expected, query


# --- hand-offs (seed 000): the integration endpoint's role, the job page's hand-off -----------


def _integration_job(url: str = "http://127.0.0.1:9/int") -> tuple[Any, WebhookDelivery]:
    company = CompanyFactory()
    endpoint_create(company=company, url=url, role="integration")
    job = JobFactory(company=company)
    run_relay()
    return job, WebhookDelivery.objects.get(handoff=True)


def test_staff_make_an_endpoint_the_integration_one(staff: Client) -> None:
    company = CompanyFactory()
    first = endpoint_create(company=company, url="http://127.0.0.1:9/a", events=["*"])
    second = endpoint_create(company=company, url="http://127.0.0.1:9/b", events=["*"])
    url = reverse("admin:webhooks_webhookendpoint_change", args=[first.pk])
    form = {"url": first.url, "role": "integration", "events": "[]", "description": ""}

    assert staff.post(url, {**form, "is_active": "on"}).status_code == 302
    first.refresh_from_db()
    assert (first.role, first.events) == ("integration", [])

    other = reverse("admin:webhooks_webhookendpoint_change", args=[second.pk])
    refused = staff.post(other, {**form, "url": second.url, "events": '["*"]'})
    assert refused.status_code == 200
    assert "already has an integration endpoint" in refused.content.decode()
    empty = staff.post(other, {**form, "url": second.url, "role": "subscriber"})
    assert "Subscribe to at least one event" in empty.content.decode()
    second.refresh_from_db()
    assert (second.role, second.events) == ("subscriber", ["*"])


def test_saving_an_endpoint_writes_only_what_staff_changed_on_the_page(staff: Client) -> None:
    """The form's changed fields were those that differ from the row as it is at the save: a
    410 disable and the API's new events, committed while the page was open, differed from
    what the page posted and were written back (the gone endpoint resumed, its events
    undone). Only what staff changed on the page is written."""
    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/a", events=["*"])
    url = reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    page = staff.get(url).content.decode()
    shown = {
        name: html.unescape(value)
        for name, value in re.findall(r'name="(initial-[a-z_]+)" value="([^"]*)"', page)
    }
    assert set(shown) == {f"initial-{name}" for name in ("url", "role", "events", "is_active")}
    # meanwhile the API narrows its events and the sender disables it on a 410
    services.endpoint_update(endpoint=endpoint, events=["jobs.completed"])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False, disabled_reason="410")

    form = {"url": endpoint.url, "role": "subscriber", "events": '["*"]', "is_active": "on"}
    saved = staff.post(url, {**shown, **form, "description": "called them"})

    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.description == "called them"
    assert endpoint.events == ["jobs.completed"]
    assert (endpoint.is_active, endpoint.disabled_reason) == (False, "410")


def test_the_job_page_shows_the_handoff_and_staff_can_resend_it(staff: Client) -> None:
    from django.contrib.admin.models import LogEntry

    job, handoff = _integration_job()
    WebhookDelivery.objects.filter(pk=handoff.pk).update(
        status="failed", attempts=5, last_error="ConnectionRefusedError: refused"
    )
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'id="handoff-state">failed<' in page
    assert "5 attempts" in page and "ConnectionRefusedError" in page
    assert 'id="resend-handoff"' in page

    resend = reverse("admin:jobs_job_resend_handoff", args=[job.pk])
    assert staff.get(resend).status_code == 405
    done = staff.post(resend, follow=True)

    assert "Re-sent the hand-off (one manual attempt)." in done.content.decode()
    handoff.refresh_from_db()
    assert (handoff.status, handoff.next_trigger) == ("pending", "manual")
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert "Re-sent the hand-off" in entry.get_change_message()
    assert 'id="handoff-state">re-sending<' in done.content.decode()


def test_a_delivery_to_a_paused_endpoint_is_not_said_to_be_queued(staff: Client) -> None:
    """Redeliver said "queued for redelivery" for a delivery whose endpoint was paused (held
    until a resume) or disabled on a 410 (failed again at once, without an attempt)."""
    job, handoff = _integration_job()
    WebhookDelivery.objects.filter(pk=handoff.pk).update(status="failed", attempts=5)
    WebhookEndpoint.objects.filter(pk=handoff.endpoint_id).update(
        is_active=False, disabled_reason="The receiver answered 410 Gone."
    )
    button = reverse("admin:webhooks_webhookdelivery_redeliver", args=[handoff.pk])

    done = staff.post(button, follow=True).content.decode()
    assert "is paused (The receiver answered 410 Gone.); resume the endpoint" in done
    assert "queued" not in done
    resent = staff.post(reverse("admin:jobs_job_resend_handoff", args=[job.pk]), follow=True)
    assert "is paused" in resent.content.decode()
    listed = staff.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "redeliver", helpers.ACTION_CHECKBOX_NAME: [str(handoff.pk)]},
        follow=True,
    ).content.decode()
    assert "1 not sent: their endpoint is paused" in listed and "queued" not in listed
    handoff.refresh_from_db()
    assert (handoff.status, handoff.next_trigger) == ("failed", "scheduled")


def test_a_retrying_handoff_is_made_due_now(staff: Client) -> None:
    job, handoff = _integration_job()
    later = timezone.now() + timedelta(minutes=10)
    WebhookDelivery.objects.filter(pk=handoff.pk).update(
        attempts=1, last_status_code=503, next_attempt_at=later, dispatched_at=None
    )
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'id="handoff-state">retrying<' in page and "next attempt" in page

    done = staff.post(reverse("admin:jobs_job_resend_handoff", args=[job.pk]), follow=True)

    assert "Made the retrying hand-off due now." in done.content.decode()
    handoff.refresh_from_db()
    assert handoff.next_attempt_at <= timezone.now()
    assert handoff.next_trigger == "scheduled"


def test_resending_a_handoff_needs_the_delivery_change_permission(staff: Client) -> None:
    job, handoff = _integration_job()
    WebhookDelivery.objects.filter(pk=handoff.pk).update(status="delivered")
    viewer = UserFactory(is_staff=True, is_superuser=False)
    client = Client()
    client.force_login(viewer)

    assert client.post(reverse("admin:jobs_job_resend_handoff", args=[job.pk])).status_code == 403
    handoff.refresh_from_db()
    assert handoff.status == "delivered"


def test_a_job_without_a_handoff_says_so(staff: Client) -> None:
    job = JobFactory()
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "No hand-off" in page and 'id="resend-handoff"' not in page


# --- console v2 (issue 13): send any delivery now, logged; the audit trail stays --------------


def _delivery(url: str = "http://127.0.0.1:9/h") -> tuple[Any, WebhookDelivery]:
    company = CompanyFactory()
    endpoint_create(company=company, url=url, events=["*"])
    job = JobFactory(company=company)
    run_relay()
    return job, WebhookDelivery.objects.select_related("endpoint").get()


def _retrying(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="pending",
        attempts=2,
        last_status_code=503,
        next_attempt_at=timezone.now() + timedelta(hours=10),
        dispatched_at=None,
        locked_until=None,
    )


def test_a_retrying_delivery_is_sent_now_and_keeps_its_schedule(staff: Client) -> None:
    from django.contrib.admin.models import LogEntry

    from tests.receiver import Reply, running_receiver
    from webhooks.sending import deliver

    with running_receiver() as receiver:
        job, delivery = _delivery(receiver.url + "/hook")
        _retrying(delivery)
        receiver.default = Reply(503, body="still down")
        url = reverse("admin:webhooks_webhookdelivery_redeliver", args=[delivery.pk])

        done = staff.post(url, follow=True)

        assert "its next attempt is due now (schedule kept)" in done.content.decode()
        delivery.refresh_from_db()
        assert delivery.next_attempt_at <= timezone.now()
        assert (delivery.status, delivery.attempts, delivery.next_trigger) == (
            "pending",
            2,
            "scheduled",
        )
        deliver(delivery.pk)  # what the worker does with the queued message
        assert [r.path for r in receiver.requests] == ["/hook"]
        delivery.refresh_from_db()
        # attempt 3 of the schedule failed: the schedule goes on (attempt 4 later), not reset
        assert (delivery.status, delivery.attempts) == ("pending", 3)
        assert delivery.next_attempt_at > timezone.now()
        attempt = delivery.attempt_log.get()
        assert (attempt.number, attempt.trigger, attempt.status_code) == (3, "scheduled", 503)

    entries = LogEntry.objects.order_by("pk")
    assert [(e.object_id, e.user.username) for e in entries] == [
        (str(delivery.pk), "admin"),
        (str(job.pk), "admin"),
    ]
    assert all("due now" in e.get_change_message() for e in entries)


def test_delivery_page_has_a_redeliver_button_a_job_link_and_no_save_or_delete(
    staff: Client,
) -> None:
    job, delivery = _delivery()
    page = staff.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    html = page.content.decode()
    assert 'id="redeliver"' in html
    assert reverse("admin:webhooks_webhookdelivery_redeliver", args=[delivery.pk]) in html
    job_link = f'<a href="{reverse("admin:jobs_job_change", args=[job.pk])}" id="delivery-job">'
    assert job_link + job.code + "</a>" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert "deletelink" not in html
    assert page.context["has_delete_permission"] is False


def test_deliveries_cannot_be_deleted_or_edited(staff: Client) -> None:
    _job, delivery = _delivery()
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    html = staff.get(changelist).content.decode()
    assert 'value="delete_selected"' not in html
    assert 'value="redeliver"' in html
    delete = reverse("admin:webhooks_webhookdelivery_delete", args=[delivery.pk])
    assert staff.get(delete).status_code == 403
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    staff.post(
        changelist,
        {"action": "delete_selected", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [delivery.pk]},
    )
    change = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
    assert staff.post(change, {"status": "delivered", "attempts": "9"}).status_code == 403
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert WebhookDelivery.objects.count() == 1


def test_redeliver_needs_the_change_permission(django_user_model: Any) -> None:
    from django.contrib.auth.models import Permission

    _job, delivery = _delivery()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    viewer = UserFactory(is_staff=True, is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and 'id="redeliver"' not in page.content.decode()
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    assert 'value="redeliver"' not in client.get(changelist).content.decode()
    url = reverse("admin:webhooks_webhookdelivery_redeliver", args=[delivery.pk])
    assert client.post(url).status_code == 403
    client.post(changelist, {"action": "redeliver", helpers.ACTION_CHECKBOX_NAME: [delivery.pk]})
    delivery.refresh_from_db()
    assert delivery.status == "failed"

    # with the change permission: the button, and the redelivery
    viewer.user_permissions.add(Permission.objects.get(codename="change_webhookdelivery"))
    client.force_login(django_user_model.objects.get(pk=viewer.pk))
    page = client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    assert 'id="redeliver"' in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert client.post(url).status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_trigger) == ("pending", "manual")


def test_bulk_redeliver_any_state(staff: Client) -> None:
    from django.contrib.admin.models import LogEntry

    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    for _ in range(4):
        JobFactory(company=company)
    run_relay()
    failed, delivered, retrying, busy = WebhookDelivery.objects.order_by("created_at")
    WebhookDelivery.objects.filter(pk=failed.pk).update(status="failed", attempts=5)
    WebhookDelivery.objects.filter(pk=delivered.pk).update(status="delivered", attempts=1)
    _retrying(retrying)
    WebhookDelivery.objects.filter(pk=busy.pk).update(
        attempts=1, locked_until=timezone.now() + timedelta(minutes=1)
    )
    done = staff.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {
            "action": "redeliver",
            helpers.ACTION_CHECKBOX_NAME: [str(d.pk) for d in (failed, delivered, retrying, busy)],
        },
        follow=True,
    )
    text = done.content.decode()
    assert "2 deliveries queued for redelivery. 1 retrying made due now (schedule kept)." in text
    assert "1 being sent right now were left to that attempt." in text
    rows = {d.pk: (d.status, d.attempts, d.next_trigger) for d in WebhookDelivery.objects.all()}
    assert rows == {
        failed.pk: ("pending", 5, "manual"),
        delivered.pk: ("pending", 1, "manual"),
        retrying.pk: ("pending", 2, "scheduled"),
        busy.pk: ("pending", 1, "scheduled"),
    }
    assert WebhookDelivery.objects.get(pk=retrying.pk).next_attempt_at <= timezone.now()
    logged = set(LogEntry.objects.values_list("object_id", flat=True))
    assert {str(failed.pk), str(delivered.pk), str(retrying.pk)} <= logged
    assert str(busy.pk) not in logged


def test_send_a_test_event_to_an_endpoint(staff: Client) -> None:
    from django.contrib.admin.models import LogEntry
    from standardwebhooks.webhooks import Webhook

    from tests.receiver import running_receiver
    from webhooks.sending import deliver

    with running_receiver() as receiver:
        company = CompanyFactory()
        endpoint = endpoint_create(company=company, url=receiver.url + "/hook", events=["*"])
        paused = endpoint_create(company=company, url=receiver.url + "/off", events=["*"])
        paused.is_active = False
        paused.save()
        done = staff.post(
            reverse("admin:webhooks_webhookendpoint_changelist"),
            {
                "action": "send_test_event",
                helpers.ACTION_CHECKBOX_NAME: [str(endpoint.pk), str(paused.pk)],
            },
            follow=True,
        )
        text = done.content.decode()
        assert "1 test event queued" in text and "is paused" in text
        delivery = WebhookDelivery.objects.first()
        assert (delivery.endpoint_id, delivery.events_id, delivery.next_trigger) == (
            endpoint.pk,
            "webhooks.test",
            "manual",
        )
        deliver(delivery.pk)  # what the worker does with the queued message

        (request,) = receiver.requests
        assert request.path == "/hook" and request.json["event"]["events_id"] == "webhooks.test"
        Webhook(endpoint.secret).verify(request.body, request.headers)  # signed as usual
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("delivered", 1)
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user.username) == (str(endpoint.pk), "admin")
    assert "Sent a test event" in entry.get_change_message()


def test_sending_a_test_event_needs_the_endpoint_change_permission() -> None:
    from django.contrib.auth.models import Permission

    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])
    viewer = UserFactory(is_staff=True, is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    client = Client()
    client.force_login(viewer)
    url = reverse("admin:webhooks_webhookendpoint_changelist")
    assert 'value="send_test_event"' not in client.get(url).content.decode()
    client.post(url, {"action": "send_test_event", helpers.ACTION_CHECKBOX_NAME: [endpoint.pk]})
    assert not WebhookDelivery.objects.exists()


def test_send_a_test_event_from_the_endpoint_page(staff: Client) -> None:
    from django.contrib.admin.models import LogEntry
    from django.contrib.auth.models import Permission

    company = CompanyFactory()
    endpoint = endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    paused = endpoint_create(company=company, url="http://127.0.0.1:9/off", events=["*"])
    paused.is_active = False
    paused.save()
    page = reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    send = reverse("admin:webhooks_webhookendpoint_send_test", args=[endpoint.pk])
    assert f'action="{send}"' in staff.get(page).content.decode()

    assert staff.get(send).status_code == 405
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert forged.post(send).status_code == 403  # no CSRF token
    viewer = UserFactory(is_staff=True, is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    client = Client()
    client.force_login(viewer)
    assert 'id="send-test-event"' not in client.get(page).content.decode()
    assert client.post(send).status_code == 403
    refused = staff.post(
        reverse("admin:webhooks_webhookendpoint_send_test", args=[paused.pk]), follow=True
    )
    assert "is paused" in refused.content.decode()
    assert not WebhookDelivery.objects.exists() and not LogEntry.objects.exists()
    missing = "00000000-0000-0000-0000-000000000000"
    assert (
        staff.post(reverse("admin:webhooks_webhookendpoint_send_test", args=[missing])).status_code
        == 404
    )

    done = staff.post(send, follow=True)
    assert done.redirect_chain[-1][0] == page
    assert "1 test event queued" in done.content.decode()
    delivery = WebhookDelivery.objects.first()
    assert (delivery.endpoint_id, delivery.events_id) == (endpoint.pk, "webhooks.test")
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user.username) == (str(endpoint.pk), "admin")
    assert entry.get_change_message() == f"Sent a test event ({delivery.event_id})."


def test_endpoints_cannot_be_deleted_in_the_admin_with_their_deliveries(staff: Client) -> None:
    _job, delivery = _delivery()
    endpoint = delivery.endpoint
    changelist = reverse("admin:webhooks_webhookendpoint_changelist")
    assert 'value="delete_selected"' not in staff.get(changelist).content.decode()
    delete = reverse("admin:webhooks_webhookendpoint_delete", args=[endpoint.pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    staff.post(
        changelist,
        {"action": "delete_selected", "post": "yes", helpers.ACTION_CHECKBOX_NAME: [endpoint.pk]},
    )
    assert WebhookDelivery.objects.filter(pk=delivery.pk).exists()


def test_search_deliveries_by_job_code_any_case_job_id_and_webhook_id(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    job = JobFactory(company=company, code="INV-77")
    other = JobFactory(company=company, code="INV-778")
    run_relay()
    mine = WebhookDelivery.objects.get(object_id=str(job.pk))
    theirs = WebhookDelivery.objects.get(object_id=str(other.pk))
    url = reverse("admin:webhooks_webhookdelivery_changelist")

    def found(term: str) -> set[Any]:
        response = staff.get(url, {"q": term})
        return {d.pk for d in response.context["cl"].result_list}

    assert found("inv-77") == {mine.pk}  # the job's code in any case, not a prefix
    assert found(str(job.pk)) == {mine.pk}
    assert found(str(theirs.pk)) == {theirs.pk}
    assert found(mine.event_id) == {mine.pk}
    assert found("nope") == set()


@pytest.mark.parametrize(
    ("delivery_permission", "may_view_deliveries"),
    [(None, False), ("view_webhookdelivery", True), ("change_webhookdelivery", True)],
)
def test_staff_who_may_not_view_deliveries_see_no_endpoint_on_job_pages_or_the_dashboard(
    delivery_permission: str | None, may_view_deliveries: bool
) -> None:
    """Endpoint URLs can carry a tenant's credential in their query string: a user who gets
    403 on the endpoint and delivery lists must not read them on a job page or the dashboard."""
    from django.contrib.auth.models import Permission

    company = CompanyFactory()
    secret_url = "http://127.0.0.1:9/hook?token=tenant-credential"
    endpoint_create(company=company, url=secret_url, events=["*"])
    job = JobFactory(company=company)
    jobs.job_fail(job_id=job.pk, failure_reason="service_timeout")
    run_relay()
    WebhookDelivery.objects.update(status="failed", last_status_code=500)  # a failing endpoint
    viewer = UserFactory(is_staff=True, is_superuser=False)
    codenames = ["view_job"] + ([delivery_permission] if delivery_permission else [])
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(viewer)

    job_page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    live = client.get(reverse("admin:jobs_job_live", args=[job.pk])).content.decode()
    dashboard = client.get(reverse("admin:index")).content.decode()

    for page in (job_page, live, dashboard):
        assert ("tenant-credential" in page) is may_view_deliveries
    assert 'id="trend-jobs"' in dashboard  # the job figures stay
    # a redelivery logged on the job names the endpoint by id and origin only: the job's
    # history is open to whoever may view jobs
    staff = Client()
    staff.force_login(UserFactory(is_staff=True, is_superuser=True))
    delivery = WebhookDelivery.objects.first()
    redeliver = reverse("admin:webhooks_webhookdelivery_redeliver", args=[delivery.pk])
    assert staff.post(redeliver).status_code == 302
    history = client.get(reverse("admin:jobs_job_history", args=[job.pk])).content.decode()
    assert "Redeliver" in history and "http://127.0.0.1:9" in history
    assert "tenant-credential" not in history


def test_a_job_page_reads_no_delivery_for_staff_who_may_not_view_them_yet_stays_live() -> None:
    """Staff with view_job only: the page says deliveries are pending (it keeps refreshing)
    without reading a delivery's row or its endpoint."""
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/hook?token=c", events=["*"])
    job = JobFactory(company=company)
    jobs.job_fail(job_id=job.pk, failure_reason="service_timeout")  # finished: only webhooks move
    run_relay()
    assert WebhookDelivery.objects.filter(status="pending").exists()
    viewer = UserFactory(is_staff=True, is_superuser=False)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_job"))
    client = Client()
    client.force_login(viewer)

    with CaptureQueriesContext(connection) as queries:
        live = client.get(reverse("admin:jobs_job_live", args=[job.pk])).content.decode()

    assert "while deliveries are pending" in live
    endpoint_table = WebhookDelivery._meta.get_field("endpoint").related_model._meta.db_table
    assert not [q["sql"] for q in queries if endpoint_table in q["sql"]]
    delivery_reads = [q["sql"] for q in queries if WebhookDelivery._meta.db_table in q["sql"]]
    assert delivery_reads and all("EXISTS" in sql or "LIMIT 1" in sql for sql in delivery_reads)
