"""The lanes (``webhooks.lanes``): a company with ``WIDE_FAN_OUT`` endpoints or more has its events
relayed and its webhooks sent by the wide lane's worker; the narrow lane's leaves them alone
until they have waited ``JOBTRAIL_WIDE_LANE_TAKEOVER`` seconds."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.celery_app import app as celery_app
from jobs import relay
from jobs.models import JobEvent
from jobs.services import RELAY_TASK
from ops.models import Heartbeat
from tests.factories import CompanyFactory, JobFactory
from tests.receiver import Receiver
from webhooks import lanes, sending, services
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import SENDER_TASK, endpoint_create

pytestmark = pytest.mark.django_db

WIDE_RELAY = lanes.task(RELAY_TASK, lanes.WIDE)
WIDE_SENDER = lanes.task(SENDER_TASK, lanes.WIDE)


@pytest.fixture
def two_companies(settings: Any, receiver: Receiver) -> tuple[Any, Any]:
    """A company with WIDE_FAN_OUT endpoints and a quiet one with one, each with a new job."""
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = lanes.WIDE_FAN_OUT
    wide, quiet = CompanyFactory(name="Wide"), CompanyFactory(name="Quiet")
    for n in range(lanes.WIDE_FAN_OUT):
        endpoint_create(company=wide, url=f"{receiver.url}/wide/{n}", events=["jobs.create"])
    endpoint_create(company=quiet, url=f"{receiver.url}/quiet", events=["jobs.create"])
    JobFactory(company=wide)
    JobFactory(company=quiet)
    return wide, quiet


def unrelayed(company: Any) -> int:
    return JobEvent.objects.filter(job__company=company, relayed_at__isnull=True).count()


def wait(model: Any, company: Any, seconds: float) -> None:
    """Make ``company``'s rows of ``model`` look as if they had waited ``seconds`` already."""
    earlier = timezone.now() - timedelta(seconds=seconds)
    if model is JobEvent:
        JobEvent.objects.filter(job__company=company).update(created_at=earlier)
    else:
        WebhookDelivery.objects.filter(company=company).update(next_attempt_at=earlier)


def test_each_lane_relays_its_companies_and_the_narrow_one_wakes_the_wide_one(
    two_companies: tuple[Any, Any], published: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    wide, quiet = two_companies

    with django_capture_on_commit_callbacks(execute=True):
        assert relay.events_relay(budget=None, lane=lanes.NARROW) == 1
    assert (unrelayed(wide), unrelayed(quiet)) == (1, 0)
    assert WIDE_RELAY in published  # a wide company's event waits: the wide relay is woken
    assert SENDER_TASK in published and WIDE_SENDER not in published

    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert relay.events_relay(budget=None, lane=lanes.WIDE) == 1
    assert unrelayed(wide) == 0
    assert WebhookDelivery.objects.filter(company=wide).count() == lanes.WIDE_FAN_OUT
    assert published == [WIDE_SENDER]  # its deliveries are the wide sender's


def test_each_lanes_sender_sends_only_its_companies_webhooks(
    two_companies: tuple[Any, Any], receiver: Receiver
) -> None:
    wide, quiet = two_companies
    for lane in lanes.LANES:
        relay.events_relay(budget=None, lane=lane)

    assert sending.send_due(budget=10, lane=lanes.WIDE) == lanes.WIDE_FAN_OUT
    with receiver.lock:  # the round waited for its sends
        paths = [request.path for request in receiver.requests]
    assert len(paths) == lanes.WIDE_FAN_OUT and all("/wide/" in path for path in paths)
    assert WebhookDelivery.objects.get(company=quiet).status == DeliveryStatus.PENDING

    assert set(Heartbeat.objects.values_list("name", flat=True)) == {"wide"}  # its round said so

    assert sending.send_due(budget=10, lane=lanes.NARROW) == 1
    assert WebhookDelivery.objects.get(company=quiet).status == DeliveryStatus.DELIVERED
    delivered = WebhookDelivery.objects.filter(company=wide, status=DeliveryStatus.DELIVERED)
    assert delivered.count() == lanes.WIDE_FAN_OUT
    assert set(Heartbeat.objects.values_list("name", flat=True)) == {"wide", "worker"}


def test_the_narrow_lane_takes_over_wide_work_that_waited_past_the_takeover_time(
    two_companies: tuple[Any, Any], settings: Any
) -> None:
    settings.JOBTRAIL_WIDE_LANE_TAKEOVER = 30
    wide, quiet = two_companies
    wait(JobEvent, wide, 29)
    relay.events_relay(budget=None, lane=lanes.NARROW)
    assert unrelayed(wide) == 1  # not yet

    wait(JobEvent, wide, 31)
    relay.events_relay(budget=None, lane=lanes.NARROW)
    assert unrelayed(wide) == 0
    claims = services.deliveries_claim_due(limit=100, lane=lanes.NARROW)
    assert [claim.delivery.company_id for claim in claims] == [quiet.pk]  # the wide ones: new

    wait(WebhookDelivery, wide, 31)
    claims = services.deliveries_claim_due(limit=100, lane=lanes.NARROW)
    assert len(claims) == lanes.WIDE_FAN_OUT
    assert {claim.delivery.company_id for claim in claims} == {wide.pk}


def test_the_sweeps_wake_each_lane_that_has_waiting_work(
    two_companies: tuple[Any, Any], published: list[str]
) -> None:
    wide, _ = two_companies
    wait(JobEvent, wide, relay.SWEEP_AFTER.total_seconds() + 1)
    assert relay.relay_sweep()
    assert published == [WIDE_RELAY]  # the quiet company's event is new: its wake-up will do

    for lane in lanes.LANES:
        relay.events_relay(budget=None, lane=lane)
    WebhookDelivery.objects.update(dispatched_at=None)  # wake-ups lost with the broker
    published.clear()
    assert services.dispatch_due_deliveries() == 2
    assert sorted(published) == sorted([SENDER_TASK, WIDE_SENDER])


def test_the_dispatcher_wakes_the_narrow_sender_for_wide_deliveries_past_the_takeover_time(
    two_companies: tuple[Any, Any], published: list[str], settings: Any
) -> None:
    wide, quiet = two_companies
    for lane in lanes.LANES:
        relay.events_relay(budget=None, lane=lane)
    WebhookDelivery.objects.filter(company=quiet).delete()
    published.clear()
    assert services.dispatch_due_deliveries() == 0  # just dispatched, to the wide sender

    wait(WebhookDelivery, wide, settings.JOBTRAIL_WIDE_LANE_TAKEOVER + 1)
    assert services.dispatch_due_deliveries() == 1
    assert published == [SENDER_TASK]  # (the wide sender's wake-up is still outstanding)


def test_with_the_lanes_off_the_narrow_lane_does_everything(
    two_companies: tuple[Any, Any],
    settings: Any,
    published: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.JOBTRAIL_WIDE_LANE = False
    with django_capture_on_commit_callbacks(execute=True):
        assert relay.events_relay(budget=None, lane=lanes.WIDE) == 0
        assert relay.events_relay(budget=None, lane=lanes.NARROW) == 2
    assert SENDER_TASK in published
    assert WIDE_RELAY not in published and WIDE_SENDER not in published
    assert not services.deliveries_claim_due(limit=100, lane=lanes.WIDE)
    claims = services.deliveries_claim_due(limit=100, lane=lanes.NARROW)
    assert len(claims) == lanes.WIDE_FAN_OUT + 1


def test_a_company_is_wide_from_its_fiftieth_active_endpoint(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "REFRESH", 3600.0)  # (the test may take longer than 5 s)
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = lanes.WIDE_FAN_OUT
    company = CompanyFactory()
    endpoints = [
        endpoint_create(company=company, url=f"http://127.0.0.1:9/{n}", events=["*"])
        for n in range(lanes.WIDE_FAN_OUT)
    ]
    assert lanes.lane_of(company.pk) == lanes.WIDE
    services.endpoint_update(endpoint=endpoints[0], is_active=False)
    assert lanes.lane_of(company.pk) == lanes.WIDE  # read at most every REFRESH seconds...
    lanes.forget()
    assert lanes.lane_of(company.pk) == lanes.NARROW  # ...then 49 active ones: narrow


def test_a_wide_lane_claim_finds_nothing_when_the_last_wide_company_went_meanwhile(
    two_companies: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``claims_nothing`` and the claim's filter each read the wide companies: between the two
    the set may be read again and be empty; the claim must then find nothing, not fail."""
    wide, _ = two_companies
    for lane in lanes.LANES:
        relay.events_relay(budget=None, lane=lane)
    monkeypatch.setattr(lanes, "claims_nothing", lambda lane: False)
    monkeypatch.setattr(lanes, "wide_companies", frozenset)
    assert services.deliveries_claim_due(limit=100, lane=lanes.WIDE) == []
    assert relay.relay_batch(lane=lanes.WIDE) == 0
    assert WebhookDelivery.objects.filter(company=wide, locked_until__isnull=True).count() == 50


def test_the_wide_lanes_wake_ups_go_to_its_queue_and_the_others_to_the_default_one() -> None:
    celery_app.loader.import_default_modules()  # the apps' tasks, as a worker imports them
    router = celery_app.amqp.router
    for name in (WIDE_RELAY, WIDE_SENDER):
        assert name in celery_app.tasks
        assert router.route({}, name)["queue"].name == lanes.QUEUE
    default = celery_app.conf.task_default_queue
    for name in (RELAY_TASK, SENDER_TASK):
        assert router.route({}, name)["queue"].name == default != lanes.QUEUE
