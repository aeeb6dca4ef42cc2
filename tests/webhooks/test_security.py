"""Issue 11, findings 2, 8 and 9 for webhooks: per-company endpoint limits, subscriptions, the
fan-out outside the request, secrets never kept under an Idempotency-Key, one URL rule for the
API and the admin, and a name lookup that cannot hold a registration forever."""

import socket
import threading
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobs.models import IdempotencyKey
from tests.factories import UserFactory
from webhooks.admin import EndpointForm
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints/"


def register(api: APIClient, url: str = "http://127.0.0.1:9/hook", **headers: str) -> Any:
    return api.post(ENDPOINTS, {"url": url, "events": ["jobs.*"]}, format="json", **headers)


# --- finding 2: one tenant cannot register without bound ----------------------------------------


def test_the_default_endpoint_limit_is_in_the_range_stripe_uses(settings: Any) -> None:
    assert 16 <= settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS <= 20


def test_a_company_past_its_endpoint_limit_gets_409_and_nothing_is_stored(
    settings: Any, api: APIClient, other_api: APIClient, company: Any
) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = 3
    created = [register(api, f"http://127.0.0.1:9/hook{n}") for n in range(3)]
    assert [r.status_code for r in created] == [201] * 3

    refused = register(api, "http://127.0.0.1:9/one-too-many")

    assert refused.status_code == 409
    assert refused["Content-Type"].startswith("application/problem+json")
    body = refused.json()
    assert body["code"] == "webhook_endpoint_limit"
    assert "3" in body["detail"] and "delete" in body["detail"]
    assert WebhookEndpoint.objects.filter(company=company).count() == 3
    # paused endpoints count too: pausing does not make room
    api.patch(f"{ENDPOINTS}{created[0].json()['id']}/", {"is_active": False}, format="json")
    assert register(api, "http://127.0.0.1:9/paused-room").status_code == 409
    # another company has its own allowance; deleting one makes room again
    assert register(other_api).status_code == 201
    assert api.delete(f"{ENDPOINTS}{created[0].json()['id']}/").status_code == 204
    assert register(api, "http://127.0.0.1:9/after-delete").status_code == 201


def test_the_limit_holds_with_an_idempotency_key_and_the_refusal_is_replayed(
    settings: Any, api: APIClient
) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = 1
    assert register(api).status_code == 201
    first = register(api, "http://127.0.0.1:9/b", HTTP_IDEMPOTENCY_KEY="limit-1")
    again = register(api, "http://127.0.0.1:9/b", HTTP_IDEMPOTENCY_KEY="limit-1")
    assert (first.status_code, again.status_code) == (409, 409)
    assert again["Idempotent-Replayed"] == "true"
    assert WebhookEndpoint.objects.count() == 1


def test_subscriptions_per_endpoint_are_bounded_in_the_api_and_the_admin(
    settings: Any, api: APIClient
) -> None:
    settings.JOBTRAIL_MAX_ENDPOINT_EVENTS = 3
    events = ["jobs.create", "jobs.started", "jobs.completed", "jobs.failed"]

    response = api.post(ENDPOINTS, {"url": "http://127.0.0.1:9/h", "events": events}, format="json")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "events" and "At most 3" in error["message"]
    assert WebhookEndpoint.objects.count() == 0
    form = EndpointForm(data={"url": "http://127.0.0.1:9/h", "events": events[:4]})
    assert "At most 3" in str(form.errors["events"])
    # repeats are one subscription, not several
    repeated = ["jobs.*"] * 40
    ok = api.post(ENDPOINTS, {"url": "http://127.0.0.1:9/h", "events": repeated}, format="json")
    assert ok.status_code == 201 and ok.json()["events"] == ["jobs.*"]


def test_a_job_change_fans_out_to_no_endpoint_inside_the_request(
    settings: Any, api: APIClient
) -> None:
    """However many endpoints a company has, the API request writes its job and its event:
    the deliveries are written by the relay, in the worker (issue 10's event log)."""
    for n in range(settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS):
        assert register(api, f"http://127.0.0.1:9/fan{n}").status_code == 201

    with CaptureQueriesContext(connection) as queries:
        created = api.post("/api/v1/jobs/", {"type": "export"}, format="json")

    assert created.status_code == 201
    assert not [q["sql"] for q in queries if "webhooks_" in q["sql"]]


# --- finding 8: secrets copied at rest, a replayed rotation answering a stale secret ------------


def test_a_replayed_create_answers_without_the_secret_and_keeps_none(api: APIClient) -> None:
    first = register(api, HTTP_IDEMPOTENCY_KEY="create-1")
    replay = register(api, HTTP_IDEMPOTENCY_KEY="create-1")

    assert first.status_code == replay.status_code == 201
    assert first.json()["secret"].startswith("whsec_")
    assert replay["Idempotent-Replayed"] == "true"
    assert "secret" not in replay.json()
    assert replay.json()["id"] == first.json()["id"]
    assert replay["Location"] == first["Location"]
    assert WebhookEndpoint.objects.count() == 1
    stored = IdempotencyKey.objects.get(key="create-1")
    assert "whsec_" not in str(stored.response_body) + str(stored.response_headers)


def test_a_replayed_rotation_never_answers_a_stale_secret(api: APIClient) -> None:
    endpoint = register(api).json()
    rotate = f"{ENDPOINTS}{endpoint['id']}/rotate-secret/"
    first = api.post(rotate, HTTP_IDEMPOTENCY_KEY="rotate-1")
    second = api.post(rotate, HTTP_IDEMPOTENCY_KEY="rotate-2")  # the secret moves on

    replay = api.post(rotate, HTTP_IDEMPOTENCY_KEY="rotate-1")

    assert first.json()["secret"] != second.json()["secret"]
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert "secret" not in replay.json()
    assert first.json()["secret"] not in replay.content.decode()
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).secret == second.json()["secret"]
    for stored in IdempotencyKey.objects.all():
        assert "whsec_" not in str(stored.response_body)


# --- finding 9: webhook URLs with quotes, spaces or CRLF ---------------------------------------

UNSAFE_URLS = [
    'http://127.0.0.1:9/a"b',
    "http://127.0.0.1:9/a'b",
    "http://127.0.0.1:9/a b",
    "http://127.0.0.1:9/a\r\nX-Injected: 1",
    "http://127.0.0.1:9/a\tb",
    "http://127.0.0.1:9/<script>",
    "http://127.0.0.1:9/a\\b",
    "http://127.0.0.1:9/a{b}",
    "http://127.0.0.1:9/a\x01b",
]


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_urls_a_url_may_not_hold_are_refused_by_the_api_and_the_admin_alike(
    api: APIClient, url: str
) -> None:
    response = api.post(ENDPOINTS, {"url": url, "events": ["*"]}, format="json")

    assert response.status_code == 400, url
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    assert WebhookEndpoint.objects.count() == 0
    form = EndpointForm(data={"url": url, "events": '["*"]'})
    assert not form.is_valid()
    assert form.errors["url"] == [error["message"]]


def test_a_percent_encoded_url_is_accepted(api: APIClient) -> None:
    url = "http://127.0.0.1:9/a%22b%20c?q=%27x%27"
    assert register(api, url).json()["url"] == url


def test_an_existing_endpoint_cannot_be_changed_to_an_unsafe_url(api: APIClient) -> None:
    endpoint = register(api).json()
    patched = api.patch(
        f"{ENDPOINTS}{endpoint['id']}/", {"url": "http://127.0.0.1:9/x y"}, format="json"
    )
    assert patched.status_code == 400
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == "http://127.0.0.1:9/hook"


def test_a_name_lookup_that_hangs_is_given_up_after_its_own_timeout(
    settings: Any, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DNS server that does not answer (no real one can be run on loopback here without
    touching the machine's resolver, so getaddrinfo blocks as it would): the registration
    answers 400 once JOBTRAIL_WEBHOOK_DNS_TIMEOUT passes, instead of holding the request."""
    settings.JOBTRAIL_WEBHOOK_DNS_TIMEOUT = 0.5
    released = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def unanswered(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "slow-dns.example":
            released.wait(30)  # a resolver's own retries, at worst
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    try:
        response = api.post(
            ENDPOINTS, {"url": "https://slow-dns.example/hook", "events": ["*"]}, format="json"
        )
    finally:
        released.set()

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    assert "did not resolve within 0.5 s" in error["message"]
    assert WebhookEndpoint.objects.count() == 0


def test_the_admin_change_form_applies_the_same_rule(client: Any, api: APIClient) -> None:
    endpoint = register(api).json()
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)

    response = client.post(
        f"/admin/webhooks/webhookendpoint/{endpoint['id']}/change/",
        {"url": 'http://127.0.0.1:9/"quoted"', "events": '["*"]', "is_active": "on"},
    )

    assert response.status_code == 200  # the form again, with its error
    assert "which a URL may not hold" in response.content.decode()
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == "http://127.0.0.1:9/hook"


def test_saving_an_endpoint_in_the_admin_keeps_a_rotation_committed_meanwhile(
    client: Any, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client rotates the secret (it leaked) while staff save the endpoint's page: the
    admin wrote every column as its page read them, and the old secret signed again."""
    from webhooks import admin as webhooks_admin

    endpoint = register(api).json()
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    real_check = webhooks_admin.check_url
    rotated: list[str] = []

    def check_then_rotation_commits(url: str, **kwargs: Any) -> Any:
        target = real_check(url, **kwargs)
        # the page's object is read; the URL check's lookup takes a while; the client rotates
        fresh = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret/")
        rotated.append(fresh.json()["secret"])
        return target

    monkeypatch.setattr(webhooks_admin, "check_url", check_then_rotation_commits)
    response = client.post(
        f"/admin/webhooks/webhookendpoint/{endpoint['id']}/change/",
        {
            "url": "http://127.0.0.1:9/moved",
            "role": "subscriber",
            "events": '["*"]',
            "description": "",
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    stored = WebhookEndpoint.objects.get(pk=endpoint["id"])
    assert stored.url == "http://127.0.0.1:9/moved"  # the staff change
    assert [stored.secret] == rotated  # and the rotation
    assert stored.previous_secret == endpoint["secret"]


def test_a_change_the_service_refuses_after_the_form_accepted_it_is_a_message_not_a_500(
    client: Any, api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staff empty an integration endpoint's events (valid for an integration endpoint) while
    the client makes it a subscriber through the API: the form checked the row as the page read
    it, the service (row locked, read again) refuses a subscriber without events. That was a
    500; now nothing is written and the page says why."""
    from django.contrib.admin.models import LogEntry

    from webhooks import admin as webhooks_admin

    endpoint = api.post(
        ENDPOINTS,
        {"url": "http://127.0.0.1:9/hook", "role": "integration", "events": ["jobs.*"]},
        format="json",
    ).json()
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    real_check = webhooks_admin.check_url

    def check_then_the_api_changes_the_role(url: str, **kwargs: Any) -> Any:
        target = real_check(url, **kwargs)
        made = api.patch(
            f"/api/v1/webhook-endpoints/{endpoint['id']}/",
            {"role": "subscriber", "events": ["jobs.*"]},
            format="json",
        )
        assert made.status_code == 200, made.content
        return target

    monkeypatch.setattr(webhooks_admin, "check_url", check_then_the_api_changes_the_role)
    page = f"/admin/webhooks/webhookendpoint/{endpoint['id']}/change/"
    response = client.post(
        page,
        {
            # what the page showed (the form's hidden initial values) ...
            "initial-url": endpoint["url"],
            "initial-role": "integration",
            "initial-events": '["jobs.*"]',
            "initial-is_active": "True",
            # ... and what staff changed: a new URL, no events (as an integration endpoint may)
            "url": "http://127.0.0.1:9/moved",
            "role": "integration",
            "events": "[]",
            "description": "",
            "is_active": "on",
        },
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [(page, 302)]
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("Not saved: ")
    assert "changed while its page was open" in shown[0]
    # none of the page's change is written (the API's, made on this test's one connection
    # inside the admin's transaction, rolled back with it: not what two connections would see)
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == endpoint["url"]
    assert not LogEntry.objects.filter(object_id=endpoint["id"]).exists()  # no history entry
