"""The platform side of seed 000: hand-offs to the integration endpoint and what their end does.

Every attempt goes to a real local receiver (or a closed port, an unresolvable name, a TLS
handshake against plain HTTP) through the delivery engine's own send path.
"""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services as jobs
from jobs.models import EventSource, Job
from tests.factories import CompanyFactory, JobFactory
from tests.live import free_port
from tests.receiver import Receiver, Reply
from tests.relay import run_relay
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks import services
from webhooks.models import DeliveryStatus, EndpointRole, WebhookDelivery, WebhookEndpoint
from webhooks.sending import deliver

pytestmark = pytest.mark.django_db

ENDPOINTS_URL = "/api/v1/webhook-endpoints/"


@pytest.fixture(autouse=True)
def quick_handoffs(settings: Any) -> None:
    settings.JOBTRAIL_HANDOFF_RETRY_SCHEDULE = [0, 0]  # three attempts, each due at once
    settings.JOBTRAIL_HANDOFF_AUTH_ATTEMPTS = 2
    settings.JOBTRAIL_WEBHOOK_TIMEOUT = 1


def integration_for(company: Any, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    return services.endpoint_create(
        company=company, url=url, events=events or [], role=EndpointRole.INTEGRATION
    )


def handoff_of(job: Job) -> WebhookDelivery:
    run_relay()
    return WebhookDelivery.objects.get(object_id=str(job.pk), handoff=True)


def send_until_final(delivery: WebhookDelivery, limit: int = 10) -> WebhookDelivery:
    """Make every due attempt (the schedule's delays are 0) until the delivery is settled."""
    for _ in range(limit):
        deliver(delivery.pk)
        delivery.refresh_from_db()
        if delivery.status != DeliveryStatus.PENDING:
            return delivery
    raise AssertionError(f"still pending after {limit} attempts")


def timeline(job: Job) -> list[tuple[str, str, str]]:
    return list(
        job.events.filter(sequence__isnull=False)
        .order_by("sequence")
        .values_list("status", "failure_reason", "source")
    )


def failed_event_message(job: Job) -> str:
    return str(job.events.get(status="failed").message)


# --- the role ---------------------------------------------------------------------------------


def test_an_endpoint_is_a_subscriber_unless_registered_as_the_integration(
    api: APIClient, receiver: Receiver
) -> None:
    plain = api.post(ENDPOINTS_URL, {"url": receiver.url, "events": ["*"]}, format="json")
    integration = api.post(
        ENDPOINTS_URL, {"url": receiver.url + "/int", "role": "integration"}, format="json"
    )

    assert plain.status_code == 201 and plain.json()["role"] == "subscriber"
    assert integration.status_code == 201, integration.content
    assert integration.json()["role"] == "integration"
    assert integration.json()["events"] == []
    listed = {e["url"]: e["role"] for e in api.get(ENDPOINTS_URL).json()["results"]}
    assert listed == {receiver.url: "subscriber", receiver.url + "/int": "integration"}


def test_a_company_has_one_integration_endpoint(api: APIClient, receiver: Receiver) -> None:
    first = api.post(ENDPOINTS_URL, {"url": receiver.url, "role": "integration"}, format="json")
    second = api.post(ENDPOINTS_URL, {"url": receiver.url, "role": "integration"}, format="json")
    plain = api.post(ENDPOINTS_URL, {"url": receiver.url, "events": ["*"]}, format="json")
    promoted = api.patch(
        f"{ENDPOINTS_URL}{plain.json()['id']}/", {"role": "integration"}, format="json"
    )

    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["code"] == "integration_endpoint_exists"
    assert promoted.status_code == 409 and promoted.json()["code"] == "integration_endpoint_exists"
    assert WebhookEndpoint.objects.filter(role="integration").count() == 1
    demoted = api.patch(
        f"{ENDPOINTS_URL}{first.json()['id']}/",
        {"role": "subscriber", "events": ["*"]},
        format="json",
    )
    assert demoted.status_code == 200
    promoted = api.patch(
        f"{ENDPOINTS_URL}{plain.json()['id']}/", {"role": "integration"}, format="json"
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "integration"


def test_another_companys_integration_endpoint_does_not_count(
    api: APIClient, other_api: APIClient, receiver: Receiver
) -> None:
    body = {"url": receiver.url, "role": "integration"}
    assert other_api.post(ENDPOINTS_URL, body, format="json").status_code == 201
    assert api.post(ENDPOINTS_URL, body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({}, "events"),
        ({"events": ["*"], "role": "owner"}, "role"),
        ({"events": ["*"], "role": None}, "role"),
    ],
)
def test_bad_endpoint_settings_are_refused(
    api: APIClient, receiver: Receiver, body: dict[str, Any], field: str
) -> None:
    response = api.post(ENDPOINTS_URL, {"url": receiver.url, **body}, format="json")

    assert response.status_code == 400, response.content
    assert field in {e["field"] for e in response.json()["errors"]}
    assert WebhookEndpoint.objects.count() == 0


# --- fan-out ----------------------------------------------------------------------------------


def test_the_integration_endpoint_receives_every_new_job_as_a_handoff(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration = integration_for(company, receiver.url + "/int", ["jobs.failed"])
    subscriber = endpoint_for(company, receiver.url + "/all", ["*"])
    job = JobFactory(company=company)
    jobs.job_cancel(job_id=job.pk, actor=None)

    rows = {(d.endpoint_id, d.events_id): d.handoff for d in deliveries()}

    assert rows == {
        (integration.pk, "jobs.create"): True,  # not in its events: the hand-off
        (integration.pk, "jobs.failed"): False,  # subscribed
        (subscriber.pk, "jobs.create"): False,
        (subscriber.pk, "jobs.failed"): False,
    }


def test_an_inactive_integration_endpoint_gets_no_handoff(receiver: Receiver) -> None:
    company = CompanyFactory()
    endpoint = integration_for(company, receiver.url)
    services.endpoint_update(endpoint=endpoint, is_active=False)
    JobFactory(company=company)

    assert deliveries() == []


# --- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
def test_a_refused_handoff_fails_the_job_as_authentication_failure(
    receiver: Receiver, code: int
) -> None:
    receiver.default = Reply(code, "who are you?")
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    watcher = endpoint_for(company, receiver.url + "/watch", ["jobs.failed"])
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    assert handoff.status == "failed"
    assert handoff.attempts == 2  # JOBTRAIL_HANDOFF_AUTH_ATTEMPTS, not the whole schedule
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "authentication_failure")
    assert timeline(job) == [
        ("created", "", "api"),
        ("failed", "authentication_failure", EventSource.SYSTEM),
    ]
    message = failed_event_message(job)
    assert f"HTTP {code}" in message and "2 attempts" in message
    # jobs.failed fires as for any failure
    [failed] = deliveries(endpoint=watcher)
    assert failed.events_id == "jobs.failed"
    assert failed.payload["data"]["failure_reason"] == "authentication_failure"


def test_a_handoff_to_a_closed_port_fails_the_job_as_service_unreachable(settings: Any) -> None:
    company = CompanyFactory()
    integration_for(company, f"http://127.0.0.1:{free_port()}/int")
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    assert (handoff.status, handoff.attempts) == ("failed", 3)  # the whole hand-off schedule
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "service_unreachable")
    message = failed_event_message(job)
    assert "3 attempts" in message and "Connection refused" in message


def test_a_handoff_to_a_name_that_does_not_resolve_is_service_unreachable() -> None:
    company = CompanyFactory()
    integration_for(company, "http://jobtrail-handoff-test.invalid/int")
    job = JobFactory(company=company)

    send_until_final(handoff_of(job))

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "service_unreachable")


def test_a_tls_handshake_that_fails_is_service_unreachable(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration_for(company, receiver.url.replace("http://", "https://") + "/int")
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "service_unreachable")
    assert "SSL" in handoff.last_error


def test_a_handoff_without_an_answer_in_time_is_service_timeout(receiver: Receiver) -> None:
    receiver.default = Reply(200, delay=1.5)  # past JOBTRAIL_WEBHOOK_TIMEOUT (1 s)
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    assert handoff.attempts == 3
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "service_timeout")
    assert "Timed out waiting for the answer" in failed_event_message(job)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (502, "service_unreachable"),
        (503, "service_unreachable"),
        (504, "service_timeout"),
        (500, "integration_unusable"),
        (404, "integration_unusable"),
        (301, "integration_unusable"),
        (410, "integration_unusable"),
    ],
)
def test_other_final_answers_fail_the_job_with_their_reason(
    receiver: Receiver, code: int, reason: str
) -> None:
    receiver.default = Reply(code)
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)

    send_until_final(handoff_of(job))

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", reason)
    assert f"HTTP {code}" in failed_event_message(job)


def test_a_first_401_is_retried_once(receiver: Receiver) -> None:
    receiver.reply(Reply(401))
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    assert (handoff.status, handoff.attempts) == ("delivered", 2)
    job.refresh_from_db()
    assert job.status == "pending"


def test_a_handoff_that_succeeds_on_a_retry_leaves_the_job_pending(receiver: Receiver) -> None:
    receiver.reply(Reply(503), Reply(500))
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)

    handoff = send_until_final(handoff_of(job))

    assert (handoff.status, handoff.attempts) == ("delivered", 3)
    job.refresh_from_db()
    assert job.status == "pending"
    assert timeline(job) == [("created", "", "api")]


def test_a_delivered_handoff_leaves_the_job_to_expire(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company, expires_after=60)
    assert send_until_final(handoff_of(job)).status == "delivered"
    [request] = receiver.requests
    assert request.json["event"]["events_id"] == "jobs.create"
    assert request.json["data"]["id"] == str(job.pk)

    Job.objects.filter(pk=job.pk).update(expires_at=timezone.now())
    assert jobs.jobs_expire_stale() == 1

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "job_expired")


def test_a_job_the_integration_started_is_not_failed_by_its_handoff(receiver: Receiver) -> None:
    receiver.default = Reply(401)
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = handoff_of(job)
    jobs.job_start(job_id=job.pk)  # the integration started it meanwhile

    assert send_until_final(handoff).status == "failed"

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("processing", "")


def test_a_handoff_to_an_endpoint_disabled_meanwhile_fails_the_job(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration = integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = handoff_of(job)
    WebhookEndpoint.objects.filter(pk=integration.pk).update(
        is_active=False, disabled_reason=services.GONE_REASON
    )

    handoff = send_until_final(handoff)

    assert receiver.requests == []
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "integration_unusable")
    assert "410" in failed_event_message(job)


def test_a_handoff_whose_sender_died_at_every_attempt_fails_the_job_saying_so(
    receiver: Receiver,
) -> None:
    """Three attempts claimed and never recorded (the worker killed during each): the job
    fails as service_unreachable with the reason, not as if its endpoint were disabled."""
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = handoff_of(job)
    for _ in range(3):  # claimed, then the worker dies: no outcome, the lease lapses
        assert services.delivery_claim(delivery_id=handoff.pk) is not None
        WebhookDelivery.objects.filter(pk=handoff.pk).update(
            locked_until=timezone.now() - timedelta(seconds=1)
        )

    handoff = send_until_final(handoff)

    assert receiver.requests == []
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "service_unreachable")
    assert "without an outcome recorded" in failed_event_message(job)


def test_a_plain_subscribers_jobs_create_never_fails_the_job(receiver: Receiver) -> None:
    receiver.default = Reply(401)
    company = CompanyFactory()
    endpoint_for(company, receiver.url, ["jobs.create"])
    job = JobFactory(company=company)
    [delivery] = deliveries()

    for _ in range(12):
        deliver(delivery.pk)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    job.refresh_from_db()
    assert job.status == "pending"


# --- re-sending -------------------------------------------------------------------------------


def test_resending_a_delivered_handoff_is_one_manual_attempt(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = send_until_final(handoff_of(job))

    assert services.handoff_resend(delivery=handoff) == "redelivered"
    handoff = send_until_final(handoff)

    assert len(receiver.requests) == 2
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    triggers = list(handoff.attempt_log.order_by("number").values_list("trigger", flat=True))
    assert triggers == ["scheduled", "manual"]


def test_a_resent_handoff_refused_while_the_job_is_pending_fails_it(receiver: Receiver) -> None:
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = send_until_final(handoff_of(job))
    receiver.default = Reply(401)

    services.handoff_resend(delivery=handoff)
    send_until_final(handoff)

    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("failed", "authentication_failure")


def test_resending_a_retrying_handoff_makes_it_due_now(receiver: Receiver, settings: Any) -> None:
    settings.JOBTRAIL_HANDOFF_RETRY_SCHEDULE = [600, 600]
    receiver.reply(Reply(503))
    company = CompanyFactory()
    integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    handoff = handoff_of(job)
    deliver(handoff.pk)
    handoff.refresh_from_db()
    assert handoff.status == "pending" and handoff.next_attempt_at > timezone.now()
    deliver(handoff.pk)
    assert len(receiver.requests) == 1  # not due: nothing sent

    assert services.handoff_resend(delivery=handoff) == "due now"
    deliver(handoff.pk)

    handoff.refresh_from_db()
    assert (handoff.status, handoff.attempts) == ("delivered", 2)
    job.refresh_from_db()
    assert job.status == "pending"


def test_a_handoff_in_flight_when_its_endpoint_is_deleted_fails_no_job(receiver: Receiver) -> None:
    """The integration endpoint is deleted while its hand-off is being sent, and the answer is
    final (a 410): the job is left alone, as it was when the DELETE took the delivery at once
    (its company replaces the endpoint, or the job expires)."""
    from webhooks import sending

    receiver.default = Reply(410)
    company = CompanyFactory()
    endpoint = integration_for(company, receiver.url + "/int")
    job = JobFactory(company=company)
    claim = services.delivery_claim(delivery_id=handoff_of(job).pk)
    assert claim is not None
    services.endpoint_delete(endpoint=endpoint)  # while the hand-off is on its way

    sending.deliver_claimed(claim)

    assert len(receiver.requests) == 1
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == ("pending", "")
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).disabled_reason == ""


def test_a_test_event_to_a_deleted_endpoint_is_refused(receiver: Receiver) -> None:
    endpoint = endpoint_for(CompanyFactory(), receiver.url + "/sub", ["*"])
    read_before = WebhookEndpoint.objects.get(pk=endpoint.pk)
    services.endpoint_delete(endpoint=endpoint)

    with pytest.raises(services.EndpointNotFound):
        services.endpoint_send_test(endpoint=read_before)  # looked up before the DELETE

    assert not WebhookDelivery.objects.filter(endpoint=endpoint).exists()
