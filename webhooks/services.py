"""Webhook endpoints, the outbox (``emit``), delivery outcomes and redelivery."""

import base64
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from jobs.errors import DeliveryInProgress
from jobs.models import Company

from .events import subscribed
from .models import (
    AttemptTrigger,
    DeliveryStatus,
    DeliveryWakeup,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

SECRET_OVERLAP = timedelta(hours=24)
RESPONSE_BODY_LIMIT = 16 * 1024
RETRY_AFTER_BOUNDS = (1, 24 * 3600)
SHORT_RETRY = 300  # retries due within this many seconds are queued with a countdown
# A due delivery whose message was queued longer ago than this (or never) is taken by the batch
# sender; taking one whose message still waits is harmless (the claim makes the message a no-op).
REDISPATCH_AFTER = timedelta(seconds=30)
# An outstanding wake-up is presumed lost (e.g. a broker restart emptied the queue) after this,
# doubled for each further wake-up that nobody answered, up to WAKEUP_LOST_MAX.
WAKEUP_LOST_AFTER = timedelta(seconds=60)
WAKEUP_LOST_MAX = timedelta(hours=1)


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


def _unclaimed_due(now: datetime) -> Any:
    return WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))


def dispatch_due_deliveries() -> int:
    """Wake the batch sender when a due delivery has no message on its way; 1 if woken, else 0.

    The dispatcher (Celery beat, every few seconds) never queues one message per delivery: under
    a backlog that made the broker's queue grow by every due row on every round. It queues one
    wake-up for ``webhooks.send_due_deliveries`` (the batch sender), and only when no wake-up is
    outstanding; the sender claims due deliveries in batches (``deliveries_claim_due``, FOR
    UPDATE SKIP LOCKED) and sends them. So the broker holds at most one wake-up beside the
    per-delivery messages (one per new delivery, queued on commit, and one per short retry),
    whatever the backlog and however long no worker runs. What a broker restart loses is found
    again here: the rows of lost messages (queued more than ``REDISPATCH_AFTER`` ago) and of a
    killed worker's claims (once their lease ends) are due and unclaimed, and a lost wake-up is
    re-sent once it is presumed lost (``wakeup_send``).
    """
    now = timezone.now()
    lost = _unclaimed_due(now).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=now - REDISPATCH_AFTER)
    )
    if not lost.exists():
        return 0
    return 1 if wakeup_send() else 0


def due_deliveries_exist() -> bool:
    """Whether a due delivery waits that nobody holds."""
    return bool(_unclaimed_due(timezone.now()).exists())


def wakeup_send() -> bool:
    """Queue one wake-up for the batch sender unless one is on its way; True if queued.

    A wake-up counts as on its way from when it is queued until a sender starts on it. One that
    nobody answers within ``WAKEUP_LOST_AFTER`` is presumed lost and sent again; each further
    unanswered one doubles the wait (up to ``WAKEUP_LOST_MAX``), so a stopped worker leaves a
    handful of wake-ups in the broker after hours, not one per dispatcher round.
    """
    from .tasks import send_due_deliveries

    now = timezone.now()
    state, _ = DeliveryWakeup.objects.get_or_create(pk=1)
    if state.queued_at is not None:
        wait = min(WAKEUP_LOST_AFTER * 2 ** max(state.unanswered - 1, 0), WAKEUP_LOST_MAX)
        if state.queued_at > now - wait:
            return False
    # compare-and-set: of two dispatchers deciding at once, one queues
    won = DeliveryWakeup.objects.filter(
        pk=1, queued_at=state.queued_at, unanswered=state.unanswered
    ).update(queued_at=now, unanswered=F("unanswered") + 1)
    if not won:
        return False
    try:
        send_due_deliveries.apply_async(retry=False)
    except Exception as exc:
        logger.warning("webhook wake-up not queued (%s); the dispatcher will retry", exc)
        DeliveryWakeup.objects.filter(pk=1, queued_at=now).update(
            queued_at=state.queued_at, unanswered=state.unanswered
        )
        return False
    return True


def wakeup_received() -> None:
    """A sender started: no wake-up is outstanding any more (the dispatcher may queue the next)."""
    DeliveryWakeup.objects.filter(pk=1).update(queued_at=None, unanswered=0)


# --- attempts and outcomes --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    number: int
    trigger: str
    lease_until: datetime
    # time.monotonic() by which the attempt's HTTP exchange must be over: the claim time plus
    # JOBTRAIL_WEBHOOK_TIMEOUT, so at least LEASE - TIMEOUT before the lease ends
    deadline: float


def attempt_lease() -> timedelta:
    """How long a claim holds its delivery: the send deadline plus a margin (see settings)."""
    return timedelta(seconds=float(settings.JOBTRAIL_WEBHOOK_LEASE))


def _claim_rows(rows: list[WebhookDelivery], *, now: datetime, deadline: float) -> list[Claim]:
    """Hold ``rows`` (locked by the caller) for one attempt each."""
    if not rows:
        return []
    lease_until = now + attempt_lease()
    WebhookDelivery.objects.filter(pk__in=[row.pk for row in rows]).update(
        locked_until=lease_until, attempts=F("attempts") + 1, updated_at=now
    )
    claims = []
    for row in rows:
        row.locked_until = lease_until
        row.attempts += 1
        claims.append(
            Claim(
                delivery=row,
                endpoint=row.endpoint,
                number=row.attempts,
                trigger=row.next_trigger,
                lease_until=lease_until,
                deadline=deadline,
            )
        )
    return claims


def delivery_claim(*, delivery_id: Any) -> Claim | None:
    """Take a due pending delivery for one attempt; None if it is not due or someone has it."""
    now = timezone.now()
    deadline = time.monotonic() + float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    with transaction.atomic():
        # of=("self",): lock the delivery row only, not its endpoint (shared by all its
        # deliveries: locking it would make concurrent claims skip each other).
        rows = list(
            _unclaimed_due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk=delivery_id)
            .select_related("endpoint")
        )
        claims = _claim_rows(rows, now=now, deadline=deadline)
    return claims[0] if claims else None


def deliveries_claim_due(*, limit: int, skip_endpoints: Collection[Any] = ()) -> list[Claim]:
    """Take up to ``limit`` due deliveries (oldest first) that nobody holds, for one attempt each.

    Rows another transaction is claiming are skipped, not waited for (SKIP LOCKED), so senders
    running at once take disjoint batches. ``skip_endpoints``: leave those endpoints' rows.
    """
    now = timezone.now()
    deadline = time.monotonic() + float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    with transaction.atomic():
        rows = list(
            _unclaimed_due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .exclude(endpoint_id__in=list(skip_endpoints))
            .select_related("endpoint")
            .order_by("next_attempt_at")[:limit]
        )
        return _claim_rows(rows, now=now, deadline=deadline)


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
