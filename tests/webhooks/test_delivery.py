"""Sending deliveries to a real local HTTP receiver: signatures, retries, outcomes."""

import logging
import os
import signal
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from billiard.pool import soft_timeout_sighandler
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from django.utils.http import http_date
from standardwebhooks.webhooks import Webhook

from tests.factories import CompanyFactory, JobFactory
from tests.receiver import Receiver, Reply
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks import sending, services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.sending import deliver
from webhooks.services import retry_after_seconds

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_retries(settings) -> None:
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    settings.JOBTRAIL_WEBHOOK_TIMEOUT = 2


def _one_delivery(receiver: Receiver, events: list[str] | None = None) -> WebhookDelivery:
    company = CompanyFactory()
    endpoint_for(company, receiver.url + "/hook", events or ["jobs.create"])
    JobFactory(company=company)
    [delivery] = deliveries()
    return delivery


def _send(delivery: WebhookDelivery) -> WebhookDelivery:
    deliver(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_delivery_is_signed_and_verifiable(receiver: Receiver) -> None:
    delivery = _send(_one_delivery(receiver))

    [request] = receiver.requests
    assert request.path == "/hook"
    secret = delivery.endpoint.secret
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified == delivery.payload
    assert request.headers["webhook-id"] == delivery.event_id
    assert request.headers["Content-Type"] == "application/json"
    assert verified["event"]["events_id"] == "jobs.create"
    assert delivery.status == "delivered" and delivery.delivered_at is not None
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.trigger) == (1, 200, "scheduled")
    assert attempt.response_body == "ok"


def test_signature_with_another_secret_does_not_verify(receiver: Receiver) -> None:
    _send(_one_delivery(receiver))
    [request] = receiver.requests
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(services.generate_secret()).verify(request.body, request.headers)


@pytest.mark.usefixtures("fast_retries")
def test_500_twice_then_200_logs_three_attempts_with_one_webhook_id(receiver: Receiver) -> None:
    receiver.reply(Reply(500, "boom"), Reply(500, "boom again"))
    delivery = _one_delivery(receiver)
    for _ in range(3):
        delivery = _send(delivery)

    assert delivery.status == "delivered"
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert attempts[0].response_body == "boom"
    assert all(a.duration_ms >= 0 for a in attempts)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.event_id}
    assert len(receiver.requests) == 3


def test_a_2xx_whose_body_is_cut_short_is_delivered(receiver: Receiver) -> None:
    """The status line said 200 and the body stopped short of its Content-Length: the attempt
    was logged without a status code and retried until failed (a hand-off then failed its job
    as service_unreachable), though the receiver had accepted it."""
    receiver.reply(Reply(200, "accep", declared_length=100))

    delivery = _send(_one_delivery(receiver))

    assert delivery.status == "delivered"
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code == 200
    assert "cut short" in attempt.response_body
    assert len(receiver.requests) == 1


@pytest.mark.usefixtures("fast_retries")
def test_failed_after_the_schedule_is_used_up(receiver: Receiver) -> None:
    receiver.default = Reply(503, "down")
    delivery = _one_delivery(receiver)
    for _ in range(6):
        delivery = _send(delivery)
    assert delivery.status == "failed"
    assert delivery.attempts == 4  # first try + three retries
    assert delivery.attempt_log.count() == 4
    assert delivery.last_status_code == 503


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize(("crashed", "sent"), [(3, True), (4, False)])
def test_a_delivery_whose_sender_dies_every_time_is_not_sent_for_ever(
    receiver: Receiver, crashed: int, sent: bool
) -> None:
    """Each claim counts an attempt (the killed sender may have reached the receiver). After
    as many claims as the schedule has attempts (4 here), none recorded, the delivery fails
    instead of being sent again every lease: its sending may be what kills the worker."""
    delivery = _one_delivery(receiver)
    for _ in range(crashed):  # claimed, then the worker dies: no outcome, the lease lapses
        assert services.delivery_claim(delivery_id=delivery.pk) is not None
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            locked_until=timezone.now() - timedelta(seconds=1)
        )

    delivery = _send(delivery)

    assert len(receiver.requests) == (1 if sent else 0)
    assert delivery.attempt_log.count() == (1 if sent else 0)
    assert delivery.attempts == 4
    if sent:  # the schedule's last attempt
        assert delivery.status == "delivered"
    else:
        assert (delivery.status, delivery.last_error) == ("failed", services.USED_UP_REASON)


@pytest.mark.usefixtures("fast_retries")
def test_a_manual_attempt_whose_sender_died_is_not_sent_for_ever(receiver: Receiver) -> None:
    """A redelivery is one attempt: claimed, then the worker dies (no outcome, the lease
    lapses), the next claim fails it saying so instead of sending it again every lease."""
    delivery = _send(_one_delivery(receiver))
    assert delivery.status == "delivered"
    assert services.delivery_send_now(delivery=delivery) == "redelivered"
    assert services.delivery_claim(delivery_id=delivery.pk) is not None  # the worker dies
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )

    delivery = _send(delivery)

    assert len(receiver.requests) == 1  # the first, scheduled attempt only
    assert (delivery.status, delivery.last_error) == (
        "failed",
        services.MANUAL_USED_UP_REASON,
    )
    assert delivery.attempt_log.count() == 1
    # staff can try again: one more manual attempt, sent and logged as such
    assert services.delivery_send_now(delivery=delivery) == "redelivered"
    delivery = _send(delivery)
    assert delivery.status == "delivered"
    assert [a.trigger for a in delivery.attempt_log.order_by("number")] == ["scheduled", "manual"]


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("give_back", ["release", "defer"])
def test_a_manual_attempt_given_back_untried_is_still_sent(
    receiver: Receiver, give_back: str
) -> None:
    """A claim given back before it was started (no time left to start it, a paused endpoint)
    does not use the manual attempt up."""
    delivery = _send(_one_delivery(receiver))
    services.delivery_send_now(delivery=delivery)
    claim = services.delivery_claim(delivery_id=delivery.pk)
    assert claim is not None
    if give_back == "release":
        services.deliveries_release([claim])
    else:
        services.deliveries_defer([claim])
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())

    delivery = _send(delivery)

    assert delivery.status == "delivered"
    assert len(receiver.requests) == 2
    assert [a.trigger for a in delivery.attempt_log.order_by("number")] == ["scheduled", "manual"]


def test_retry_follows_the_schedule_with_jitter(receiver: Receiver, settings) -> None:
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [100, 1000]
    receiver.default = Reply(500)
    delivery = _send(_one_delivery(receiver))
    assert delivery.status == "pending"
    delay = (delivery.next_attempt_at - delivery.updated_at).total_seconds()
    assert 80 <= delay <= 120
    assert _send(delivery).attempts == 1  # not due yet: nothing sent
    assert len(receiver.requests) == 1


def test_retry_after_is_honoured_within_bounds(receiver: Receiver, settings) -> None:
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [5, 5]
    receiver.reply(Reply(429, headers={"Retry-After": "120"}))
    delivery = _send(_one_delivery(receiver))
    delay = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 110 <= delay <= 121

    receiver.reply(Reply(503, headers={"Retry-After": "99999999"}))
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    delivery = _send(delivery)
    delay = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 24 * 3600 - 10 <= delay <= 24 * 3600


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("\N{SUPERSCRIPT TWO}", 3, 6.1),  # not a number: the schedule's 5 s, jittered
        ("soon", 3, 6.1),
        ("9" * 5000, 24 * 3600 - 10, 24 * 3600),  # a number too long for int(): the bound
    ],
    ids=["superscript two", "a word", "5000 digits"],
)
def test_a_retry_after_python_cannot_read_as_int_is_still_recorded(
    receiver: Receiver, settings, value: str, low: float, high: float
) -> None:
    """``str.isdigit`` takes ``²`` (one latin-1 byte on the wire) and ``int`` refuses it, as it
    refuses 5,000 digits: the attempt was never recorded, and the delivery was sent again each
    time its claim ran out instead of on its schedule."""
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [5, 5]
    receiver.reply(Reply(503, headers={"Retry-After": value}))
    delivery = _send(_one_delivery(receiver))

    assert delivery.status == "pending"
    assert delivery.attempts == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    delay = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert low <= delay <= high


def test_a_retry_after_http_date_is_honoured(receiver: Receiver, settings) -> None:
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [5, 5]
    receiver.reply(Reply(503, headers={"Retry-After": http_date(time.time() + 300)}))
    delivery = _send(_one_delivery(receiver))

    delay = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 290 <= delay <= 301


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        (" 7 ", 7),
        ("0", 0),
        ("00000000005", 5),  # leading zeros: still 5 s
        ("0" * 20, 0),
        ("9" * 5000, 10**10),  # int() refuses more than 4,300 digits
        ("\N{SUPERSCRIPT TWO}", None),
        ("\N{CIRCLED DIGIT ONE}", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0),  # a date gone by: now
    ],
    ids=repr,
)
def test_retry_after_seconds(value: str | None, seconds: int | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_410_disables_the_endpoint(receiver: Receiver) -> None:
    receiver.reply(Reply(410, "gone"))
    delivery = _send(_one_delivery(receiver))
    assert delivery.status == "failed"
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    assert not endpoint.is_active
    assert "410" in endpoint.disabled_reason


def test_redirect_is_a_failure_and_not_followed(receiver: Receiver) -> None:
    receiver.reply(Reply(302, headers={"Location": receiver.url + "/elsewhere"}))
    delivery = _send(_one_delivery(receiver))
    assert delivery.status == "failed"
    assert "redirect" in delivery.last_error
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.usefixtures("fast_retries")
def test_timeout_is_logged_and_retried(receiver: Receiver, settings) -> None:
    settings.JOBTRAIL_WEBHOOK_TIMEOUT = 0.3
    receiver.reply(Reply(200, delay=1.5))
    delivery = _send(_one_delivery(receiver))
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None
    assert "timed out" in attempt.error.lower()
    assert delivery.status == "pending"


@pytest.mark.usefixtures("fast_retries")
def test_unreachable_receiver_is_logged_and_retried(receiver: Receiver) -> None:
    company = CompanyFactory()
    endpoint_for(company, "http://127.0.0.1:9/closed-port", ["jobs.create"])
    JobFactory(company=company)
    [delivery] = deliveries()
    delivery = _send(delivery)
    assert delivery.status == "pending"
    assert "refused" in delivery.last_error.lower() or "connect" in delivery.last_error.lower()


def test_response_body_is_cut_to_16_kib(receiver: Receiver) -> None:
    receiver.reply(Reply(500, "x" * 40_000))
    delivery = _send(_one_delivery(receiver))
    [attempt] = delivery.attempt_log.all()
    assert len(attempt.response_body) == 16 * 1024


def test_manual_redelivery_is_recorded_as_manual(receiver: Receiver) -> None:
    delivery = _send(_one_delivery(receiver))
    assert services.delivery_send_now(delivery=delivery) == "redelivered"
    delivery = _send(delivery)
    attempts = list(delivery.attempt_log.order_by("number"))
    assert [(a.number, a.trigger) for a in attempts] == [(1, "scheduled"), (2, "manual")]
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]


def test_failed_manual_redelivery_makes_one_attempt(receiver: Receiver) -> None:
    receiver.default = Reply(500)
    delivery = _one_delivery(receiver)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    assert services.delivery_send_now(delivery=delivery) == "redelivered"
    delivery = _send(delivery)
    assert delivery.status == "failed"
    assert delivery.attempt_log.get().trigger == "manual"


def test_redeliver_everything_failed_since(receiver: Receiver) -> None:
    company = CompanyFactory()
    endpoint = endpoint_for(company, receiver.url + "/hook")
    for _ in range(3):
        JobFactory(company=company)
    old, recent, recent2 = deliveries()
    WebhookDelivery.objects.filter(pk__in=[old.pk, recent.pk, recent2.pk]).update(status="failed")
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    count = services.endpoint_redeliver_failed(
        endpoint=endpoint, since=timezone.now() - timedelta(days=1)
    )
    assert count == 2
    assert set(WebhookDelivery.objects.filter(status="pending").values_list("pk", flat=True)) == {
        recent.pk,
        recent2.pk,
    }


def test_paused_endpoint_holds_deliveries_until_resumed(receiver: Receiver) -> None:
    delivery = _one_delivery(receiver)
    endpoint = WebhookEndpoint.objects.get(pk=delivery.endpoint_id)
    services.endpoint_update(endpoint=endpoint, is_active=False)
    delivery = _send(delivery)
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert delivery.next_attempt_at > timezone.now()
    assert receiver.requests == []

    services.endpoint_update(endpoint=endpoint, is_active=True)
    delivery = _send(delivery)
    assert delivery.status == "delivered"
    assert len(receiver.requests) == 1


def test_endpoint_disabled_by_410_abandons_its_pending_deliveries(receiver: Receiver) -> None:
    delivery = _one_delivery(receiver)
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
        is_active=False, disabled_reason="The receiver answered 410 Gone."
    )
    delivery = _send(delivery)
    assert delivery.status == "failed" and "410" in delivery.last_error
    assert receiver.requests == []


def test_an_attempt_that_outlived_its_lease_does_not_overwrite_newer_state(
    receiver: Receiver,
) -> None:
    delivery = _one_delivery(receiver)
    stale = services.delivery_claim(delivery_id=delivery.pk)
    assert stale is not None
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    deliver(delivery.pk)  # another worker takes over after the lease and delivers it
    services.delivery_record_attempt(
        claim=stale,
        result=services.AttemptResult(started_at=timezone.now(), duration_ms=1, status_code=410),
    )
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert WebhookEndpoint.objects.get(pk=delivery.endpoint_id).is_active
    assert delivery.attempt_log.count() == 2  # both attempts are logged


def test_rotated_secret_both_signatures_verify_for_a_day(receiver: Receiver) -> None:
    company = CompanyFactory()
    endpoint = endpoint_for(company, receiver.url + "/hook", ["jobs.create"])
    old_secret = endpoint.secret
    endpoint = services.endpoint_rotate_secret(endpoint=endpoint)
    assert endpoint.secret != old_secret
    JobFactory(company=company)
    _send(deliveries()[0])
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint.secret).verify(request.body, request.headers)
    Webhook(old_secret).verify(request.body, request.headers)

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    JobFactory(company=company)
    _send(deliveries(status="pending")[0])
    later = receiver.requests[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(old_secret).verify(later.body, later.headers)


def test_send_time_ssrf_check(receiver: Receiver, settings) -> None:
    delivery = _one_delivery(receiver)
    settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.DEBUG = True  # http allowed, private addresses still refused
    delivery = _send(delivery)
    assert receiver.requests == []
    [attempt] = delivery.attempt_log.all()
    assert "SSRF" in attempt.error and "loopback" in attempt.error


def test_a_delivery_is_sent_once_even_when_queued_twice(receiver: Receiver) -> None:
    delivery = _one_delivery(receiver)
    deliver(delivery.pk)
    deliver(delivery.pk)
    assert len(receiver.requests) == 1


def test_a_held_delivery_is_not_sent_by_another_worker(receiver: Receiver) -> None:
    delivery = _one_delivery(receiver)
    claim = services.delivery_claim(delivery_id=delivery.pk)
    assert claim is not None
    deliver(delivery.pk)  # another worker: the lease is held
    assert receiver.requests == []


def test_secrets_never_reach_the_logs(receiver: Receiver, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.reply(Reply(500))
    delivery = _send(_one_delivery(receiver))
    assert delivery.endpoint.secret not in caplog.text
    assert delivery.endpoint.secret.removeprefix("whsec_") not in caplog.text


# --- the hard deadline ------------------------------------------------------------------------


def _wait_answered(receiver: Receiver) -> bool | None:
    """Whether the receiver managed to write its whole answer (once it knows)."""
    receiver.wait_for(lambda rs: bool(rs) and rs[0].answered is not None, timeout=30)
    return receiver.requests[0].answered


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize(
    ("drip_headers", "phase"),
    [(False, "reading the answer"), (True, "waiting for the answer")],
    ids=["body-dripped", "headers-dripped"],
)
def test_a_dripping_receiver_is_cut_off_at_the_deadline(
    receiver: Receiver, settings, drip_headers: bool, phase: str
) -> None:
    # each read gets a byte well within any per-read timeout; the whole answer would take 40 s
    settings.JOBTRAIL_WEBHOOK_TIMEOUT = 1
    receiver.reply(Reply(200, "x" * 200, drip=0.2, drip_headers=drip_headers))
    delivery = _send(_one_delivery(receiver))

    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None
    assert attempt.error.startswith(f"Timed out {phase}")
    assert "JOBTRAIL_WEBHOOK_TIMEOUT (1 s)" in attempt.error
    assert delivery.status == "pending" and delivery.locked_until is None  # retried
    assert _wait_answered(receiver) is False  # the sender hung up mid-answer


def test_a_soft_time_limit_during_the_send_still_records_the_attempt(
    receiver: Receiver, settings
) -> None:
    """Celery's soft time limit interrupts a send, as billiard delivers it in a prefork child.

    The hard deadline ends every send before the send task's soft limit, so a worker does not
    reach this in practice; here billiard's own handler is installed for SIGUSR1 and the signal
    is sent while the send is blocked reading a slow answer (what the pool does at the limit).
    """
    settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE = [100]
    settings.JOBTRAIL_WEBHOOK_TIMEOUT = 30
    receiver.reply(Reply(200, delay=5))
    delivery = _one_delivery(receiver)
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(SoftTimeLimitExceeded):
            deliver(delivery.pk)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)

    delivery.refresh_from_db()
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None
    assert "interrupted" in attempt.error and "SoftTimeLimitExceeded" in attempt.error
    assert delivery.status == "pending"
    assert delivery.locked_until is None  # the claim is released
    assert delivery.next_attempt_at > timezone.now()  # retried on the schedule
    assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.event_id]


def test_claims_a_round_could_not_settle_for_a_lost_connection_are_given_back(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimed, then the connection died before the round looked at their endpoints: the
    round gives them back untried once the database answers, instead of holding them, unsent,
    until their leases end."""
    import time

    from django.db import OperationalError

    delivery = _one_delivery(receiver)
    claims = services.deliveries_claim_due(limit=10)
    assert [c.delivery.pk for c in claims] == [delivery.pk]
    round_ = sending._Round(senders=1, stop_at=time.monotonic() + 5)

    def connection_lost(claims: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(sending, "_settle_inactive", connection_lost)
    with pytest.raises(OperationalError):
        round_.add(claims)
    monkeypatch.undo()
    delivery.refresh_from_db()
    assert delivery.locked_until is not None and delivery.attempts == 1  # still held

    round_.tend()  # the coordinator's next turn, the database back

    delivery.refresh_from_db()
    assert (delivery.locked_until, delivery.attempts, delivery.status) == (None, 0, "pending")
    assert services.deliveries_claim_due(limit=10)  # due again at once


def _a_dead_senders_manual_attempt(receiver: Receiver) -> WebhookDelivery:
    """A delivered delivery redelivered, whose manual attempt a sender took and died with."""
    delivery = _send(_one_delivery(receiver))
    services.delivery_send_now(delivery=delivery)
    assert services.delivery_claim(delivery_id=delivery.pk) is not None  # the worker dies
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    return delivery


def test_a_dead_senders_manual_attempt_given_back_for_a_lost_connection_is_not_sent(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-claim that would abandon it loses its connection and gives it back untried: the
    mark stays (this claim did not take the attempt), so the next claim abandons it."""
    import time

    from django.db import OperationalError

    delivery = _a_dead_senders_manual_attempt(receiver)
    claims = services.deliveries_claim_due(limit=10)
    assert [c.trigger for c in claims] == ["manual_taken"]
    round_ = sending._Round(senders=1, stop_at=time.monotonic() + 5)

    def connection_lost(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "deliveries_abandon", connection_lost)
    with pytest.raises(OperationalError):
        round_.add(claims)
    monkeypatch.undo()
    round_.tend()  # given back untried

    delivery = _send(delivery)

    assert len(receiver.requests) == 1  # the first, scheduled attempt only
    assert (delivery.status, delivery.last_error, delivery.next_trigger) == (
        "failed",
        services.MANUAL_USED_UP_REASON,
        "scheduled",
    )


def test_send_now_gives_a_dead_senders_manual_attempt_one_more_try(receiver: Receiver) -> None:
    """Staff (or the API) press "send now" on a delivery whose manual attempt's sender died
    before its lease ended: it is sent, not failed unsent at the next claim."""
    delivery = _a_dead_senders_manual_attempt(receiver)

    assert services.delivery_send_now(delivery=delivery) == "due now"
    delivery = _send(delivery)

    assert len(receiver.requests) == 2
    assert delivery.status == "delivered"
    assert [a.trigger for a in delivery.attempt_log.order_by("number")] == ["scheduled", "manual"]


def test_a_claim_whose_manual_mark_fails_is_rolled_back_not_held(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of a redelivery and the mark saying its manual attempt was taken commit
    together: the connection lost between them leaves the delivery due at once, not held
    unmarked (and unsent) until its lease ends."""
    from django.db import OperationalError

    delivery = _send(_one_delivery(receiver))
    services.delivery_send_now(delivery=delivery)  # a redelivery: one manual attempt

    def connection_lost(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_mark_manual_taken", connection_lost)
    with pytest.raises(OperationalError):
        services.deliveries_claim_due(limit=10)
    monkeypatch.undo()

    delivery.refresh_from_db()
    assert (delivery.locked_until, delivery.attempts, delivery.next_trigger) == (None, 1, "manual")
    [claim] = services.deliveries_claim_due(limit=10)  # due again at once
    assert claim.trigger == "manual"
    delivery.refresh_from_db()
    assert delivery.next_trigger == "manual_taken"
