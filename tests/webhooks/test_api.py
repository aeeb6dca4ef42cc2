"""The webhook API: endpoints, secrets, SSRF guard, deliveries, redelivery, tenancy."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from config.periodic import periodic_tasks, register_periodic_tasks
from tests.factories import CompanyFactory, JobFactory
from tests.receiver import Receiver, Reply
from tests.relay import run_relay
from tests.webhooks.helpers import deliveries
from webhooks import services
from webhooks.events import EVENT_TYPES
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.sending import deliver

pytestmark = pytest.mark.django_db


def _register(api: APIClient, url: str = "http://127.0.0.1:9/hook", **body: Any) -> dict:
    response = api.post(
        "/api/v1/webhook-endpoints/", {"url": url, "events": ["jobs.*"], **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_register_shows_the_secret_once(api: APIClient) -> None:
    created = _register(api, description="ERP sync")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["jobs.*"] and created["is_active"] is True

    listed = api.get("/api/v1/webhook-endpoints/").json()["results"]
    detail = api.get(f"/api/v1/webhook-endpoints/{created['id']}/").json()
    for shown in (listed[0], detail):
        assert "secret" not in shown
        assert created["secret"] not in str(shown)

    rotated = api.post(f"/api/v1/webhook-endpoints/{created['id']}/rotate-secret/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]


def test_update_and_delete(api: APIClient) -> None:
    created = _register(api)
    url = f"/api/v1/webhook-endpoints/{created['id']}/"
    patched = api.patch(url, {"events": ["jobs.completed"], "is_active": False}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["events"], patched.json()["is_active"]) == (["jobs.completed"], False)
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["jobs.exploded"]}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": "jobs.*"}, "events"),
        ({"url": "ftp://example.com/", "events": ["*"]}, "url"),
        ({"url": "not a url", "events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1:9/", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9/", "events": ["*"], "is_active": "yes"}, "is_active"),
        ({"url": "http://127.0.0.1:9/", "events": ["*"], "secret": "whsec_x"}, "secret"),
    ],
)
def test_invalid_endpoints_are_refused(api: APIClient, body: dict, field: str) -> None:
    response = api.post("/api/v1/webhook-endpoints/", body, format="json")
    assert response.status_code == 400
    assert field in {e["field"] for e in response.json()["errors"]}
    assert WebhookEndpoint.objects.count() == 0


SSRF_URLS = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://192.168.1.10/hook",
    "http://172.16.0.5/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://2130706433/hook",
    "http://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 around the metadata address
    "http://0x7f000001/hook",
    "http://0.0.0.0/hook",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://[fec0::1]/hook",  # IPv6 site-local (deprecated; Python calls it neither private)
    "http://168.63.129.16/machine?comp=goalstate",  # Azure's platform address
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_ssrf_guard_refuses_internal_targets(api: APIClient, settings, url: str) -> None:
    settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.DEBUG = True  # so http:// itself is allowed and the address is what is refused
    response = api.post("/api/v1/webhook-endpoints/", {"url": url, "events": ["*"]}, format="json")
    assert response.status_code == 400, url
    [err] = response.json()["errors"]
    assert err["field"] == "url"
    assert "address" in err["message"] or "resolve" in err["message"]
    assert WebhookEndpoint.objects.count() == 0


def test_a_refused_name_says_nothing_of_what_it_resolves_to(
    api: APIClient, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name inside our network and a name that does not exist get the same answer, naming no
    address: registrations are no way to map internal names. An address written as such is
    named (the client wrote it)."""
    import socket

    settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.DEBUG = True
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "db.internal":
            return real("10.1.2.3", *args, **kwargs)
        if host == "nope.internal":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    messages = {}
    for url in ("http://db.internal/x", "http://nope.internal/x", "http://10.1.2.3/x"):
        response = api.post(
            "/api/v1/webhook-endpoints/", {"url": url, "events": ["*"]}, format="json"
        )
        assert response.status_code == 400, response.content
        messages[url] = response.json()["errors"][0]["message"]

    assert messages["http://db.internal/x"] == (
        "The host 'db.internal' does not resolve to a public address."
    )
    assert messages["http://nope.internal/x"] == (
        "The host 'nope.internal' does not resolve to a public address."
    )
    assert messages["http://10.1.2.3/x"] == "The address 10.1.2.3 is a private address."
    assert WebhookEndpoint.objects.count() == 0


def test_https_is_required_outside_debug(api: APIClient, settings) -> None:
    settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.DEBUG = False
    response = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://example.com/h", "events": ["*"]},
        format="json",
    )
    assert response.status_code == 400
    assert "https" in response.json()["errors"][0]["message"]


def test_endpoints_are_tenant_scoped(api: APIClient, other_api: APIClient) -> None:
    created = _register(api)
    base = f"/api/v1/webhook-endpoints/{created['id']}/"
    assert other_api.get("/api/v1/webhook-endpoints/").json()["results"] == []
    assert other_api.get(base).status_code == 404
    assert other_api.patch(base, {"is_active": False}, format="json").status_code == 404
    assert other_api.delete(base).status_code == 404
    assert other_api.post(base + "rotate-secret/").status_code == 404
    assert (
        other_api.post(
            base + "redeliver-failed/", {"since": "2020-01-01T00:00:00Z"}, format="json"
        ).status_code
        == 404
    )
    assert WebhookEndpoint.objects.get(pk=created["id"]).is_active


def test_deliveries_list_filter_detail_redeliver(
    api: APIClient, other_api: APIClient, receiver: Receiver, company
) -> None:
    endpoint = _register(api, url=receiver.url + "/hook")
    job = JobFactory(company=company)
    other_job = JobFactory(company=company)
    [created, _] = deliveries()
    deliver(created.pk)

    listed = api.get("/api/v1/webhook-deliveries/").json()["results"]
    assert len(listed) == 2
    by_object = api.get("/api/v1/webhook-deliveries/", {"object_id": str(job.pk)}).json()
    assert [d["object_id"] for d in by_object["results"]] == [str(job.pk)]
    delivered = api.get("/api/v1/webhook-deliveries/", {"status": "delivered"}).json()["results"]
    assert [d["id"] for d in delivered] == [str(created.pk)]
    assert (
        len(api.get("/api/v1/webhook-deliveries/", {"endpoint": endpoint["id"]}).json()["results"])
        == 2
    )
    assert (
        api.get("/api/v1/webhook-deliveries/", {"events_id": "jobs.completed"}).json()["results"]
        == []
    )
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert api.get("/api/v1/webhook-deliveries/", {"created_after": future}).json()["results"] == []
    assert api.get("/api/v1/webhook-deliveries/", {"status": "bogus"}).status_code == 400

    detail = api.get(f"/api/v1/webhook-deliveries/{created.pk}/").json()
    assert detail["payload"]["event"]["object_id"] == str(job.pk)
    [attempt] = detail["attempt_log"]
    assert (attempt["status_code"], attempt["trigger"]) == (200, "scheduled")

    redelivered = api.post(f"/api/v1/webhook-deliveries/{created.pk}/redeliver/")
    assert redelivered.status_code == 202
    assert redelivered.json()["status"] == "pending"
    deliver(created.pk)
    assert WebhookAttempt.objects.filter(delivery=created, trigger="manual").count() == 1

    assert other_api.get("/api/v1/webhook-deliveries/").json()["results"] == []
    assert other_api.get(f"/api/v1/webhook-deliveries/{created.pk}/").status_code == 404
    assert other_api.post(f"/api/v1/webhook-deliveries/{created.pk}/redeliver/").status_code == 404
    assert other_job.pk  # both jobs belong to the first company


def test_redeliver_failed_since_endpoint(api: APIClient, company) -> None:
    endpoint = _register(api)
    JobFactory(company=company)
    run_relay()
    WebhookDelivery.objects.update(status="failed")
    response = api.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/redeliver-failed/",
        {"since": (timezone.now() - timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert response.status_code == 202
    assert response.json() == {"redelivered": 1}
    assert WebhookDelivery.objects.get().status == "pending"


@pytest.mark.parametrize("disabled_reason", ["", "410 Gone"])
def test_redeliver_failed_of_a_paused_endpoint_is_409_and_queues_nothing(
    api: APIClient, company, disabled_reason: str
) -> None:
    """It answered "redelivered": N while a paused endpoint held them (and one disabled on a
    410 failed them again at once, without an attempt); the console refused already."""
    endpoint = _register(api)
    JobFactory(company=company)
    run_relay()
    WebhookDelivery.objects.update(status="failed")
    WebhookEndpoint.objects.filter(pk=endpoint["id"]).update(
        is_active=False, disabled_reason=disabled_reason
    )
    response = api.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/redeliver-failed/",
        {"since": (timezone.now() - timedelta(hours=1)).isoformat()},
        format="json",
    )
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "endpoint_paused"
    assert "resume the endpoint" in response.json()["detail"]
    assert WebhookDelivery.objects.get().status == "failed"


def test_event_types(api: APIClient) -> None:
    response = api.get("/api/v1/webhook-event-types/")
    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == list(EVENT_TYPES)


def test_webhook_api_needs_a_token() -> None:
    client = APIClient()
    for url in [
        "/api/v1/webhook-endpoints/",
        "/api/v1/webhook-deliveries/",
        "/api/v1/webhook-event-types/",
    ]:
        assert client.get(url).status_code == 401


# --- dispatcher, retention, periodic tasks ----------------------------------------------------


def test_broker_outage_leaves_rows_for_the_dispatcher(company, broker_down, caplog) -> None:
    services.endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
    for _ in range(2):
        JobFactory(company=company)
    rows = deliveries()
    WebhookDelivery.objects.update(dispatched_at=timezone.now())  # as queued by the relay

    services.enqueue([row.pk for row in rows])

    assert set(WebhookDelivery.objects.values_list("dispatched_at", "status")) == {
        (None, "pending")
    }
    # the first refusal starts the pause: the second delivery is not offered to the broker
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) == 1 and "webhooks.send_delivery" in refused[0].getMessage()
    assert not [r for r in caplog.records if "presumed down" in r.getMessage()]


def test_periodic_tasks_are_registered_idempotently() -> None:
    names = {spec["name"] for spec in periodic_tasks()}
    assert names <= set(PeriodicTask.objects.values_list("name", flat=True))  # from migrate
    dispatcher = PeriodicTask.objects.get(task="webhooks.dispatch_due_deliveries")
    assert dispatcher.interval is not None and dispatcher.interval.every <= 10
    dispatcher.enabled = False  # staff paused it in the admin
    dispatcher.save()
    count = PeriodicTask.objects.count()
    register_periodic_tasks()
    assert PeriodicTask.objects.count() == count
    assert not PeriodicTask.objects.get(pk=dispatcher.pk).enabled


def test_redelivering_a_retrying_delivery_makes_it_due_now(
    api: APIClient, company, receiver: Receiver
) -> None:
    """As the admin's Redeliver: the next scheduled attempt happens now, counted as such."""
    receiver.default = Reply(503)
    _register(api, url=receiver.url + "/hook")
    JobFactory(company=company)
    [delivery] = deliveries()
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.next_attempt_at > timezone.now()  # retrying later, on its schedule

    before = timezone.now()
    response = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["attempts"]) == ("pending", 1)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at >= before
    assert delivery.next_attempt_at <= timezone.now()  # due now
    assert delivery.next_trigger == "scheduled"

    receiver.default = Reply(200)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert list(delivery.attempt_log.values_list("trigger", flat=True)) == [
        "scheduled",
        "scheduled",
    ]


def test_redelivering_a_delivery_being_sent_is_409(api: APIClient, company) -> None:
    _register(api)
    JobFactory(company=company)
    [delivery] = deliveries()
    claim = services.delivery_claim(delivery_id=delivery.pk)  # a sender holds it now
    assert claim is not None
    response = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/")
    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "delivery_pending"
    assert "being sent right now" in response.json()["detail"]
    unchanged = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (unchanged.attempts, unchanged.locked_until) == (1, claim.lease_until)


def test_redelivering_a_delivery_of_a_paused_endpoint_is_409(api: APIClient, company) -> None:
    """A paused endpoint held it (a 410-disabled one failed it again without an attempt) while
    the answer said it was sent now: the endpoint must be resumed, which sends what it holds."""
    endpoint_id = _register(api)["id"]
    JobFactory(company=company)
    [delivery] = deliveries()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    assert (
        api.patch(
            f"/api/v1/webhook-endpoints/{endpoint_id}/", {"is_active": False}, format="json"
        ).status_code
        == 200
    )

    response = api.post(f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/")

    assert response.status_code == 409
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "endpoint_paused"
    assert "resume the endpoint" in response.json()["detail"]
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "failed"


def test_an_update_from_a_stale_read_keeps_a_rotation_and_a_410_disable_made_since() -> None:
    """The PATCH reads the endpoint, a rotation (or the sender's 410 disable) commits, then the
    PATCH saves: only the fields it changes are written."""
    from webhooks.models import WebhookEndpoint
    from webhooks.services import endpoint_create, endpoint_rotate_secret, endpoint_update

    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    rotated = endpoint_rotate_secret(endpoint=endpoint).secret
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_reason="The receiver answered 410 Gone."
    )

    endpoint_update(endpoint=stale, description="renamed")

    now = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (now.description, now.secret, now.is_active) == ("renamed", rotated, False)
    assert now.disabled_reason == "The receiver answered 410 Gone."


BAD_BODIES = [
    ("{", "application/json", 400, "malformed_json"),
    ('{"secret": "my-own-secret-1234567890"}', "application/json", 400, "validation_error"),
    ("[]", "application/json", 400, "validation_error"),
    ("secret=x", "text/plain", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), BAD_BODIES)
def test_actions_without_a_body_refuse_one_and_change_nothing(
    api: APIClient, company, raw: str, content_type: str, status: int, code: str
) -> None:
    """Rotate-secret and redeliver take no body: a body sent anyway (a typo'd field, broken
    JSON) is refused like any other, not ignored while the action runs."""
    endpoint = _register(api)
    JobFactory(company=company)
    run_relay()
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    secret = WebhookEndpoint.objects.get().secret
    for url in (
        f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret/",
        f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/",
    ):
        response = api.generic("POST", url, raw, content_type=content_type)
        assert response.status_code == status, (url, response.content)
        assert response.json()["code"] == code
    assert WebhookEndpoint.objects.get().secret == secret
    assert WebhookDelivery.objects.get().status == "failed"
    # without a body, or with {}, both act
    assert api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret/").status_code == 200
    redeliver = f"/api/v1/webhook-deliveries/{delivery.pk}/redeliver/"
    assert api.post(redeliver, {}, format="json").status_code == 202
