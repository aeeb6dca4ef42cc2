"""Webhook endpoints, the outbox (``emit``), delivery outcomes and redelivery."""

import base64
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from jobs.models import Company

from .events import subscribed
from .models import AttemptTrigger, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SECRET_OVERLAP = timedelta(hours=24)
RESPONSE_BODY_LIMIT = 16 * 1024
RETRY_AFTER_BOUNDS = (1, 24 * 3600)
SHORT_RETRY = 300  # retries due within this many seconds are queued with a countdown
REDISPATCH_AFTER = timedelta(seconds=60)


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# --- endpoints --------------------------------------------------------------------------------


def endpoint_create(
    *, company: Company, url: str, events: list[str], description: str = "", is_active: bool = True
) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        company=company,
        url=url,
        events=events,
        description=description,
        is_active=is_active,
        secret=generate_secret(),
    )


def endpoint_update(*, endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    resumed = fields.get("is_active") is True and not endpoint.is_active
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if resumed:
        endpoint.disabled_reason = ""
    with transaction.atomic():
        endpoint.save()
        if resumed:  # deliveries held while it was paused go out now
            WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).update(
                next_attempt_at=timezone.now(), dispatched_at=None
            )
    return endpoint


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Issue a new secret; the old one keeps signing beside it for 24 hours."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + SECRET_OVERLAP
    endpoint.secret = generate_secret()
    endpoint.save()
    return endpoint


def signature_header(
    endpoint: WebhookEndpoint, *, msg_id: str, timestamp: datetime, body: str
) -> str:
    secrets_in_use = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and (endpoint.previous_secret_expires_at > timezone.now())
    ):
        secrets_in_use.append(endpoint.previous_secret)
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
    )


# --- the outbox -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One webhook event: ``data`` is called only when an endpoint is subscribed."""

    company_id: Any
    object_id: Any
    data: Callable[[], dict[str, Any]]


def emit(
    *,
    company_id: Any,
    events_id: str,
    object_id: Any,
    data: Callable[[], dict[str, Any]],
) -> list[WebhookDelivery]:
    """Write one delivery per subscribed active endpoint, in the caller's transaction.

    Sending is queued once the transaction commits; if it rolls back, no row and nothing is sent.
    """
    return emit_many(
        events_id=events_id, events=[Event(company_id=company_id, object_id=object_id, data=data)]
    )


def emit_many(*, events_id: str, events: list[Event]) -> list[WebhookDelivery]:
    """``emit`` for many events of one kind: one endpoint query, one insert, one queueing."""
    company_ids = {event.company_id for event in events}
    endpoints: dict[Any, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(company_id__in=company_ids, is_active=True):
        if subscribed(endpoint.events, events_id):
            endpoints.setdefault(endpoint.company_id, []).append(endpoint)
    if not endpoints:
        return []
    now = timezone.now()
    rows: list[WebhookDelivery] = []
    for event in events:
        subscribers = endpoints.get(event.company_id)
        if not subscribers:
            continue
        payload = {
            "event": {
                "dt": now.isoformat(),
                "events_id": events_id,
                "object_id": str(event.object_id),
            },
            "data": event.data(),
        }
        event_id = f"msg_{uuid.uuid4().hex}"
        rows.extend(
            WebhookDelivery(
                endpoint=endpoint,
                company_id=event.company_id,
                event_id=event_id,
                events_id=events_id,
                object_id=str(event.object_id),
                payload=payload,
                next_attempt_at=now,
                dispatched_at=now,
            )
            for endpoint in subscribers
        )
    deliveries = WebhookDelivery.objects.bulk_create(rows)
    ids = [d.pk for d in deliveries]
    # robust: a failure after the commit (broker or database gone) must not fail the request
    # that committed; the rows stay due and the dispatcher queues them.
    transaction.on_commit(lambda: enqueue(ids), robust=True)
    return deliveries


# After a failed publish, skip the broker for a few seconds: requests stay fast during an
# outage, and the dispatcher queues the rows once the broker is back.
BROKER_BACKOFF = 5.0
_broker_down_until = 0.0


def enqueue(ids: Iterable[Any], *, countdown: float | None = None) -> None:
    """Queue sending; if the broker is unreachable, leave the rows for the dispatcher."""
    global _broker_down_until
    from .tasks import send_delivery

    ids = list(ids)
    failed = []
    for position, delivery_id in enumerate(ids):
        if time.monotonic() < _broker_down_until:
            failed.extend(ids[position:])
            break
        options: dict[str, Any] = {"retry": False}
        if countdown is not None:
            options["countdown"] = countdown
        try:
            send_delivery.apply_async((str(delivery_id),), **options)
        except Exception as exc:
            logger.warning("webhook delivery not queued (%s); the dispatcher will retry", exc)
            _broker_down_until = time.monotonic() + BROKER_BACKOFF
            failed.append(delivery_id)
    if failed:
        WebhookDelivery.objects.filter(pk__in=failed).update(dispatched_at=None)


def dispatch_due_deliveries(*, batch: int = 500) -> int:
    """Queue every due delivery that no task has picked up; return how many."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=now - REDISPATCH_AFTER))
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(dispatched_at=now)
    enqueue(ids)
    return len(ids)


# --- attempts and outcomes --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    number: int
    trigger: str
    lease_until: datetime


def delivery_claim(*, delivery_id: Any) -> Claim | None:
    """Take a due pending delivery for one attempt; None if it is not due or someone has it."""
    now = timezone.now()
    # longer than one send can take (connect + read timeouts), so it never expires mid-send
    lease = timedelta(seconds=2 * settings.JOBTRAIL_WEBHOOK_TIMEOUT + 30)
    with transaction.atomic():
        # of=("self",): lock the delivery row only, not its endpoint (shared by all its
        # deliveries: locking it would make concurrent claims skip each other).
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .select_related("endpoint")
            .first()
        )
        if delivery is None:
            return None
        delivery.locked_until = now + lease
        delivery.attempts += 1
        delivery.save(update_fields=["locked_until", "attempts", "updated_at"])
    return Claim(
        delivery=delivery,
        endpoint=delivery.endpoint,
        number=delivery.attempts,
        trigger=delivery.next_trigger,
        lease_until=delivery.locked_until,
    )


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str = ""
    error: str = ""
    retry_after: str | None = None


def _retry_delay(number: int, retry_after: str | None) -> float | None:
    """Seconds until the next try, or None when the schedule is used up."""
    schedule = settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE
    if number > len(schedule):
        return None
    if retry_after and retry_after.strip().isdigit():
        low, high = RETRY_AFTER_BOUNDS
        return float(min(max(int(retry_after.strip()), low), high))
    base = schedule[number - 1]
    return base * random.uniform(0.8, 1.2)


@transaction.atomic
def delivery_record_attempt(*, claim: Claim, result: AttemptResult) -> WebhookDelivery:
    """Log the attempt and decide: delivered, retry later, or failed."""
    delivery = WebhookDelivery.objects.select_for_update().get(pk=claim.delivery.pk)
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=claim.number,
        trigger=claim.trigger,
        started_at=result.started_at,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        response_body=result.response_body[:RESPONSE_BODY_LIMIT],
        error=result.error,
    )
    if delivery.status != DeliveryStatus.PENDING or delivery.locked_until != claim.lease_until:
        # The lease ran out and another sender (or a redelivery) owns the delivery now: log
        # what happened, leave its state to the owner.
        logger.warning(
            "attempt %s of delivery %s finished after its lease", claim.number, delivery.pk
        )
        return delivery
    code = result.status_code
    delivery.last_status_code = code
    delivery.last_error = result.error
    delivery.locked_until = None
    delivery.next_trigger = AttemptTrigger.SCHEDULED
    countdown: float | None = None
    if code is not None and 200 <= code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.next_attempt_at = None
    elif code == 410:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
            is_active=False,
            disabled_reason="The receiver answered 410 Gone; the endpoint was disabled.",
            updated_at=timezone.now(),
        )
    elif code is not None and 300 <= code < 400:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        delivery.last_error = "The receiver answered a redirect; redirects are not followed."
    elif claim.trigger == AttemptTrigger.MANUAL:
        delivery.status = DeliveryStatus.FAILED  # a manual redelivery is one attempt
        delivery.next_attempt_at = None
    else:
        delay = _retry_delay(claim.number, result.retry_after)
        if delay is None:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            if delay <= SHORT_RETRY:
                delivery.dispatched_at = delivery.next_attempt_at
                countdown = delay
            else:
                delivery.dispatched_at = None
    delivery.save()
    if countdown is not None:
        delivery_id = delivery.pk
        transaction.on_commit(lambda: enqueue([delivery_id], countdown=countdown), robust=True)
    return delivery


PAUSED_RECHECK = timedelta(minutes=5)


def delivery_defer(*, claim: Claim) -> None:
    """Put a claimed delivery back, untried, for later (its endpoint is paused)."""
    WebhookDelivery.objects.filter(pk=claim.delivery.pk, locked_until=claim.lease_until).update(
        next_attempt_at=timezone.now() + PAUSED_RECHECK,
        locked_until=None,
        dispatched_at=None,
        attempts=claim.number - 1,
        updated_at=timezone.now(),
    )


def delivery_abandon(*, claim: Claim, reason: str) -> None:
    """Fail a claimed delivery without an attempt (its endpoint is gone or disabled)."""
    WebhookDelivery.objects.filter(pk=claim.delivery.pk).update(
        status=DeliveryStatus.FAILED,
        next_attempt_at=None,
        locked_until=None,
        last_error=reason,
        attempts=claim.number - 1,
        updated_at=timezone.now(),
    )


# --- redelivery -------------------------------------------------------------------------------


class DeliveryInProgress(Exception):
    """A pending delivery is still being tried on its schedule; it cannot be redelivered."""


def _redeliver(deliveries: Any) -> int:
    """Queue one manual attempt for each finished (delivered or failed) delivery."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(deliveries.exclude(status=DeliveryStatus.PENDING).values_list("pk", flat=True))
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            next_trigger=AttemptTrigger.MANUAL,
            locked_until=None,
            dispatched_at=now,
            updated_at=now,
        )
        transaction.on_commit(lambda: enqueue(ids), robust=True)
    return len(ids)


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send one delivery again now (recorded as a manual attempt)."""
    delivery.refresh_from_db(fields=["status"])
    if delivery.status == DeliveryStatus.PENDING:
        raise DeliveryInProgress(
            "This delivery is still pending (retried on its schedule); redeliver it once it "
            "is delivered or failed."
        )
    _redeliver(WebhookDelivery.objects.filter(pk=delivery.pk))
    delivery.refresh_from_db()
    return delivery


def endpoint_redeliver_failed(*, endpoint: WebhookEndpoint, since: datetime) -> int:
    """Send again everything that failed for ``endpoint`` since ``since``; return how many."""
    return _redeliver(
        WebhookDelivery.objects.filter(
            endpoint=endpoint, status=DeliveryStatus.FAILED, created_at__gte=since
        )
    )


def deliveries_purge(*, older_than: timedelta) -> tuple[int, int]:
    """Delete attempts and delivered deliveries older than ``older_than``."""
    cutoff = timezone.now() - older_than
    attempts, _ = WebhookAttempt.objects.filter(started_at__lt=cutoff).delete()
    deliveries, _ = WebhookDelivery.objects.filter(
        status=DeliveryStatus.DELIVERED, created_at__lt=cutoff
    ).delete()
    return attempts, deliveries
