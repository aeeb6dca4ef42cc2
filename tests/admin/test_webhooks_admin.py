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
