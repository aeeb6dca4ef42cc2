"""Webhook endpoints and deliveries in the admin: no secrets, redelivery actions."""

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
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_endpoint_pages_never_show_the_secret(staff: Client) -> None:
    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])
    for url in (
        reverse("admin:webhooks_webhookendpoint_changelist"),
        reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]),
    ):
        content = staff.get(url).content.decode()
        assert endpoint.secret not in content
        assert endpoint.secret.removeprefix("whsec_") not in content


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
    delivery = WebhookDelivery.objects.get()
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
