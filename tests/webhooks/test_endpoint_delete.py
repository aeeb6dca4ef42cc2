"""Deleting an endpoint through the API: gone at once for its company, rows deleted after."""

import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.factories import JobFactory
from tests.receiver import Receiver
from tests.webhooks.helpers import deliveries
from webhooks import sending, services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints/"
DELIVERIES = "/api/v1/webhook-deliveries/"


def _register(api: APIClient, url: str, **body: Any) -> dict[str, Any]:
    response = api.post(ENDPOINTS, {"url": url, "events": ["*"], **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_deleted_endpoint_is_gone_at_once_and_its_rows_after(
    company: Any,
    api: APIClient,
    receiver: Receiver,
    published: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    doomed = _register(api, f"{receiver.url}/doomed")
    kept = _register(api, f"{receiver.url}/kept")
    JobFactory(company=company)
    rows = deliveries()
    [doomed_delivery] = [d for d in rows if str(d.endpoint_id) == doomed["id"]]
    WebhookAttempt.objects.create(
        delivery=doomed_delivery, number=1, started_at=doomed_delivery.created_at
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"{ENDPOINTS}{doomed['id']}/").status_code == 204

    assert published == [services.DELETE_ENDPOINTS_TASK]
    # gone for the company: the endpoint, its deliveries, and its place among the endpoints
    assert api.get(f"{ENDPOINTS}{doomed['id']}/").status_code == 404
    assert api.delete(f"{ENDPOINTS}{doomed['id']}/").status_code == 404
    assert [e["id"] for e in api.get(ENDPOINTS).json()["results"]] == [kept["id"]]
    assert api.get(f"{DELIVERIES}{doomed_delivery.pk}/").status_code == 404
    listed = api.get(DELIVERIES).json()["results"]
    assert {d["endpoint_id"] for d in listed} == {kept["id"]}
    # nothing is sent to it, nor fanned out to it
    JobFactory(company=company)
    deliveries()
    assert WebhookDelivery.objects.filter(endpoint_id=doomed["id"]).count() == 1
    sending.send_due(budget=3)
    receiver.wait_for(lambda got: len(got) >= 2, timeout=10)  # the kept endpoint's two
    time.sleep(0.2)
    assert sorted(r.path for r in receiver.requests) == ["/kept", "/kept"]

    # the worker deletes its rows
    assert services.endpoints_delete_pending(deadline=time.monotonic() + 60) == (1, 1, True)
    assert not WebhookEndpoint.objects.filter(pk=doomed["id"]).exists()
    assert not WebhookDelivery.objects.filter(endpoint_id=doomed["id"]).exists()
    assert not WebhookAttempt.objects.filter(delivery_id=doomed_delivery.pk).exists()
    assert WebhookDelivery.objects.filter(endpoint_id=kept["id"]).count() == 2


def test_a_deleted_endpoint_frees_its_place_at_once(
    api: APIClient, settings: Any, published: list[str]
) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = 2
    integration = _register(api, "http://127.0.0.1:9/a", role="integration")
    _register(api, "http://127.0.0.1:9/b")
    refused = api.post(ENDPOINTS, {"url": "http://127.0.0.1:9/c", "events": ["*"]}, format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "webhook_endpoint_limit"

    assert api.delete(f"{ENDPOINTS}{integration['id']}/").status_code == 204

    # the limit and the one integration endpoint a company may have count it no more, though
    # its row waits for the worker
    assert WebhookEndpoint.objects.filter(pk=integration["id"]).exists()
    _register(api, "http://127.0.0.1:9/c", role="integration")


def test_the_request_writes_one_row_whatever_the_endpoint_holds(
    company: Any, api: APIClient, published: list[str]
) -> None:
    endpoint = _register(api, "http://127.0.0.1:9/big")
    for _ in range(20):
        JobFactory(company=company)
    deliveries()

    with CaptureQueriesContext(connection) as queries:
        assert api.delete(f"{ENDPOINTS}{endpoint['id']}/").status_code == 204

    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert "DELETE" not in statements
    assert statements.count("UPDATE") == 1  # the endpoint, marked deleted
    assert WebhookDelivery.objects.filter(endpoint_id=endpoint["id"]).count() == 20


def test_the_console_stops_listing_a_deleted_endpoint(
    company: Any, api: APIClient, admin_client: Any, published: list[str]
) -> None:
    from django.urls import reverse

    doomed = _register(api, "http://127.0.0.1:9/doomed-hook")
    kept = _register(api, "http://127.0.0.1:9/kept-hook")
    assert api.delete(f"{ENDPOINTS}{doomed['id']}/").status_code == 204

    listing = admin_client.get(reverse("admin:webhooks_webhookendpoint_changelist"))
    assert listing.status_code == 200
    assert kept["url"] in listing.content.decode()
    assert doomed["url"] not in listing.content.decode()
    page = reverse("admin:webhooks_webhookendpoint_change", args=[doomed["id"]])
    assert admin_client.get(page).status_code == 302  # "doesn't exist": back to the list


def test_a_patch_that_read_the_endpoint_before_its_delete_answers_404(
    api: APIClient, monkeypatch: pytest.MonkeyPatch, published: list[str]
) -> None:
    from webhooks import selectors

    doomed = _register(api, "http://127.0.0.1:9/doomed-hook")
    url = f"{ENDPOINTS}{doomed['id']}/"
    assert api.patch(url, {"is_active": False}, format="json").status_code == 200
    read_before = WebhookEndpoint.objects.get(pk=doomed["id"])
    assert api.delete(url).status_code == 204
    # the PATCH's lookup ran before the DELETE committed (its URL check takes up to 3 s)
    monkeypatch.setattr(selectors, "endpoint_get", lambda **kwargs: read_before)

    resumed = api.patch(url, {"is_active": True}, format="json")

    assert resumed.status_code == 404
    assert resumed["Content-Type"] == "application/problem+json"
    assert resumed.json()["code"] == "not_found"
    stored = WebhookEndpoint.objects.get(pk=doomed["id"])
    assert stored.deleted_at is not None and not stored.is_active
