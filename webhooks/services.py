"""Webhook endpoints, the fan-out of logged events, delivery outcomes and redelivery."""

import base64
import json
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from itertools import chain
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.utils import timezone
from django.utils.http import parse_http_date_safe
from standardwebhooks.webhooks import Webhook

from config import leases, metrics, outbox, sql
from config.rows import among, hot_cursor, insert_many
from jobs.errors import (
    DeliveryInProgress,
    EndpointNotFound,
    EndpointPaused,
    IntegrationEndpointTaken,
    InvalidEndpoint,
    WebhookEndpointLimit,
)
from jobs.models import Company

from . import hooks, lanes
from .events import HANDOFF_EVENT, subscribed
from .models import (
    MANUAL_TAKEN,
    AttemptTrigger,
    DeliveryStatus,
    EndpointRole,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from .selectors import endpoint_origin

logger = logging.getLogger(__name__)

SECRET_OVERLAP = timedelta(hours=24)
RESPONSE_BODY_LIMIT = 16 * 1024
# An attempt logs at most this many response headers, each value cut to HEADER_VALUE_LIMIT
# characters (a receiver cannot make the attempt log grow without bound).
RESPONSE_HEADERS_LIMIT = 50
HEADER_VALUE_LIMIT = 512
# What the attempt log keeps of a request's signature header: never the signature itself.
REDACTED = "[redacted]"
SIGNATURE_HEADER = "webhook-signature"


def headers_as_sent(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers for the attempt log: the signature header's value redacted."""
    return {
        name: REDACTED if name.lower() == SIGNATURE_HEADER else value
        for name, value in headers.items()
    }


def headers_as_received(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The first ``RESPONSE_HEADERS_LIMIT`` response headers, values cut to a bound.

    A repeated header (``Set-Cookie``) keeps its values joined with ``, `` as HTTP reads them.
    """
    kept: dict[str, str] = {}
    for name, value in headers:
        if name not in kept and len(kept) >= RESPONSE_HEADERS_LIMIT:
            break
        name = name[:HEADER_VALUE_LIMIT]
        joined = f"{kept[name]}, {value}" if name in kept else value
        kept[name] = joined[:HEADER_VALUE_LIMIT]
    return kept


RETRY_AFTER_BOUNDS = (1, 24 * 3600)
# A due delivery whose message was queued longer ago than this (or never) is taken by the batch
# sender; taking one whose message still waits is harmless (the claim makes the message a no-op).
REDISPATCH_AFTER = timedelta(seconds=30)
SENDER_TASK = "webhooks.send_due_deliveries"


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# --- endpoints --------------------------------------------------------------------------------


def _check_endpoint(endpoint: WebhookEndpoint) -> None:
    """A subscriber needs events; a company has one integration endpoint (row locks: caller)."""
    if endpoint.role != EndpointRole.INTEGRATION and not endpoint.events:
        raise InvalidEndpoint(
            "Subscribe to at least one event id or pattern (only an integration endpoint may "
            "leave events empty: it always receives jobs.create).",
            field="events",
        )
    if endpoint.role == EndpointRole.INTEGRATION:
        others = (
            WebhookEndpoint.objects.live()
            .filter(company_id=endpoint.company_id, role=EndpointRole.INTEGRATION)
            .exclude(pk=endpoint.pk)
        )
        if others.exists():
            raise IntegrationEndpointTaken(
                "Your company already has an integration endpoint; change its url, or make it "
                "a subscriber first.",
                field="role",
            )


def _save_endpoint(endpoint: WebhookEndpoint, **kwargs: Any) -> None:
    _check_endpoint(endpoint)
    try:
        with transaction.atomic():
            endpoint.save(**kwargs)
    except IntegrityError as exc:  # two integration endpoints registered at once
        if endpoint.role != EndpointRole.INTEGRATION:
            raise
        raise IntegrationEndpointTaken(
            "Your company already has an integration endpoint.", field="role"
        ) from exc


@transaction.atomic
def endpoint_create(
    *,
    company: Company,
    url: str,
    events: list[str] | None = None,
    description: str = "",
    is_active: bool = True,
    role: str = EndpointRole.SUBSCRIBER,
) -> WebhookEndpoint:
    """Register an endpoint, unless the company has JOBTRAIL_MAX_WEBHOOK_ENDPOINTS already; an
    ``integration`` endpoint also receives every job's hand-off.

    The company's row is locked while its endpoints are counted, so concurrent registrations
    cannot pass the limit together.
    """
    list(Company.objects.select_for_update().filter(pk=company.pk).values_list("pk"))
    limit = settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS
    if WebhookEndpoint.objects.live().filter(company=company).count() >= limit:
        raise WebhookEndpointLimit(
            f"Your company has {limit} webhook endpoints, the most it may have "
            "(JOBTRAIL_MAX_WEBHOOK_ENDPOINTS); delete one first. One endpoint can subscribe to "
            "many events."
        )
    endpoint = WebhookEndpoint(
        company=company,
        url=url,
        events=events or [],
        description=description,
        is_active=is_active,
        role=role,
        secret=generate_secret(),
    )
    _save_endpoint(endpoint, force_insert=True)
    return endpoint


@transaction.atomic
def endpoint_update(*, endpoint: WebhookEndpoint, **fields: Any) -> WebhookEndpoint:
    """Change ``fields`` of the endpoint (locked and read again: only these columns are
    written, so a secret rotated or a 410 disable committed since the caller read it stays).

    Resuming a paused endpoint locks its pending deliveries before the endpoint (in
    primary-key order): the order of the sender's recorder, which may disable the endpoint on
    a 410 while it holds deliveries, and of an endpoint DELETE (never a cycle with them)."""
    pending = WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=DeliveryStatus.PENDING)
    if fields.get("is_active") is True and not _is_active(endpoint.pk):
        list(pending.order_by("pk").select_for_update().values_list("pk", flat=True))
    endpoint = _locked_endpoint(endpoint.pk)
    resumed = fields.get("is_active") is True and not endpoint.is_active
    for name, value in fields.items():
        setattr(endpoint, name, value)
    changed = [*fields, "updated_at"]
    if resumed:
        endpoint.disabled_reason = ""
        changed.append("disabled_reason")
    _save_endpoint(endpoint, update_fields=changed)
    if resumed:  # deliveries held while it was paused go out now
        now = timezone.now()
        pending.update(next_attempt_at=now, fair_at=now, dispatched_at=None)
    return endpoint


def _locked_endpoint(endpoint_id: Any) -> WebhookEndpoint:
    """The endpoint's row, locked and read again; ``EndpointNotFound`` if a DELETE committed
    since the caller looked it up (a resume would otherwise bring a deleted endpoint back to
    life: active, fanned out to and sent to, while its company gets 404 for it)."""
    try:
        return WebhookEndpoint.objects.live().select_for_update().get(pk=endpoint_id)
    except WebhookEndpoint.DoesNotExist as exc:
        raise EndpointNotFound() from exc


def _is_active(endpoint_id: Any) -> bool:
    return WebhookEndpoint.objects.live().filter(pk=endpoint_id, is_active=True).exists()


# Published when an endpoint is deleted (``endpoint_delete``); the hourly retention run
# finishes any deletion whose message was lost.
DELETE_ENDPOINTS_TASK = "webhooks.delete_endpoints"


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint: at once for its company, its deliveries and their log after.

    One short UPDATE here: the endpoint is marked deleted and inactive, so from this commit the
    API answers 404 for it and leaves its deliveries out, it counts toward no limit, and the
    relay fans nothing out to it (active endpoints only). Its pending deliveries are never
    sent (a sender defers a claim of an inactive endpoint's delivery; one already on its way
    may still be sent). The worker then deletes the deliveries and their attempt log in
    batches and at last the row (``endpoints_delete_pending``). Before, one transaction
    deleted and locked them all in the request: an endpoint with 400,000 deliveries took
    seconds (a few million, past the web's timeout: such a DELETE could never succeed), and
    every relay batch fanning out to that company waited for it.
    """
    now = timezone.now()
    WebhookEndpoint.objects.live().filter(pk=endpoint.pk).update(
        is_active=False, disabled_reason="", deleted_at=now, updated_at=now
    )
    outbox.publish_on_commit(DELETE_ENDPOINTS_TASK)


# The order a deleted endpoint's deliveries are deleted in (``endpoints_delete_pending``).
STATUS_ORDER = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.DELIVERED)


class EndpointsDeleted(NamedTuple):
    endpoints: int
    deliveries: int
    done: bool


def endpoints_delete_pending(*, deadline: float) -> EndpointsDeleted:
    """Finish deleting the endpoints the API deleted: each one's deliveries and their attempt
    log in batches, then its row once nothing refers to it; how many of each, and whether
    it got through (not when ``deadline``, on ``time.monotonic()``, passed with work left).

    Rows another transaction holds (a delivery whose attempt is being recorded, say) are
    skipped (``config.sql.delete_oldest``), and their endpoint is finished by a later run (the
    next DELETE's, or the hourly retention run). So is one a relay's fan-out added a delivery
    to after the DELETE committed (it read the endpoint as active before)."""
    endpoints = deliveries_deleted = 0
    pending = WebhookEndpoint.objects.deleted().order_by("deleted_at")
    for endpoint_id in pending.values_list("pk", flat=True):
        deliveries = WebhookDelivery.objects.filter(endpoint_id=endpoint_id)
        # the pending ones first (no longer claimed and deferred, nor counted as a backlog);
        # each status oldest first, each batch where the last one ended: the index
        # webhook_delivery_endpoint (endpoint, status, -created_at) read backward from there
        by_status = [deliveries.filter(status=status) for status in STATUS_ORDER]
        for batch in (*by_status, deliveries):  # (and any other status: one pass for the rest)
            gone = sql.delete_oldest(
                batch,
                order_by="created_at",
                deadline=deadline,
                dependents=[(WebhookAttempt, "delivery")],
            )
            deliveries_deleted += gone.rows
            if not gone.done:
                return EndpointsDeleted(endpoints, deliveries_deleted, False)
        with transaction.atomic():
            # locked first: a fan-out to it committing from now on waits (its foreign key is
            # checked under a share lock of this row) and then finds it gone; one committed
            # before is seen by the check below, and the row waits for a later run
            sql.lock_all(WebhookEndpoint.objects.filter(pk=endpoint_id))
            if not deliveries.exists():  # else some were held, or came late
                endpoints += sql.delete_rows(WebhookEndpoint.objects.filter(pk=endpoint_id))
    return EndpointsDeleted(endpoints, deliveries_deleted, True)


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Issue a new secret; the old one keeps signing beside it for 24 hours."""
    endpoint = _locked_endpoint(endpoint.pk)
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


# --- the outbox: fan-out of logged events -----------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One webhook event for a company's subscribed endpoints (built by the relay).

    ``event_id`` (the ``webhook-id``) is derived from the logged event (a keyed hash of its id:
    the same while the secret key is), and ``job_event_id`` names it, so fanning the same
    event out twice inserts nothing the second time (the (job event, endpoint) pair is
    unique whatever the key); ``data`` is called only when an endpoint is subscribed.
    """

    company_id: Any
    events_id: str
    object_id: Any
    event_id: str
    dt: datetime
    data: Callable[[], dict[str, Any]]
    job_event_id: Any = None


def is_handoff(endpoint: WebhookEndpoint, events_id: str) -> bool:
    """Whether sending ``events_id`` to ``endpoint`` hands a new job to the integration."""
    return endpoint.role == EndpointRole.INTEGRATION and events_id == HANDOFF_EVENT


def _line_ends(company_ids: Collection[Any]) -> dict[Any, datetime | None]:
    """Where each company's line ends: the ``fair_at`` of its last untried delivery, or None.

    One statement, one backward probe of ``webhook_delivery_company_fair`` per company.
    """
    last = (
        WebhookDelivery.objects.filter(
            company_id=OuterRef("pk"), status=DeliveryStatus.PENDING, attempts=0
        )
        .order_by("-fair_at")
        .values("fair_at")[:1]
    )
    return dict(
        Company.objects.filter(pk__in=list(company_ids))
        .annotate(line_end=Subquery(last))
        .values_list("pk", "line_end")
    )


def deliveries_fan_out(*, messages: list[Message]) -> int:
    """Write one delivery per subscribed active endpoint, in the caller's transaction.

    One endpoint query, one query for where each company's line ends, and one insert for the
    whole batch: on PostgreSQL one ``INSERT ... SELECT`` over arrays (``_insert_set_based``: no
    Python object per delivery, each message's payload serialized once), elsewhere
    ``bulk_create``. A (job event, endpoint) or (endpoint, webhook-id) pair that exists already
    is skipped, so running the fan-out again over the same messages inserts nothing. Return how
    many rows were offered; the caller wakes the sender after its commit.

    Fairness: a company's deliveries get ``fair_at`` values ``JOBTRAIL_WEBHOOK_FAIR_SPACING``
    apart, starting after its last untried one (or now), and claims take due rows in ``fair_at``
    order. So a burst of N deliveries stands in line over N x spacing, and a delivery another
    company makes meanwhile starts at "now": ahead of most of the burst.
    """
    company_ids = {message.company_id for message in messages}
    endpoints: dict[Any, list[WebhookEndpoint]] = {}
    active = (
        WebhookEndpoint.objects.live()
        .filter(company_id__in=company_ids, is_active=True)
        .only("id", "company_id", "events", "role")
    )
    for endpoint in active:
        endpoints.setdefault(endpoint.company_id, []).append(endpoint)
    if not endpoints:
        return 0
    now = timezone.now()
    spacing = timedelta(seconds=float(settings.JOBTRAIL_WEBHOOK_FAIR_SPACING))
    line = {
        company: now if end is None else max(now, end + spacing)
        for company, end in _line_ends(endpoints).items()
    }
    outgoing: list[_Outgoing] = []
    for message in messages:
        subscribers = [
            endpoint
            for endpoint in endpoints.get(message.company_id, ())
            if subscribed(endpoint.events, message.events_id)
            or is_handoff(endpoint, message.events_id)
        ]
        if not subscribers:
            continue
        payload = {
            "event": {
                "dt": message.dt.isoformat(),
                "events_id": message.events_id,
                "object_id": str(message.object_id),
            },
            "data": message.data(),
        }
        start = line[message.company_id]
        line[message.company_id] = start + spacing * len(subscribers)
        outgoing.append(_Outgoing(message, payload, subscribers, start))
    if connection.vendor == "postgresql":
        _insert_set_based(outgoing, spacing=spacing, now=now)
    else:
        WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint=endpoint,
                    company_id=entry.message.company_id,
                    job_event_id=entry.message.job_event_id,
                    event_id=entry.message.event_id,
                    events_id=entry.message.events_id,
                    object_id=str(entry.message.object_id),
                    handoff=is_handoff(endpoint, entry.message.events_id),
                    payload=entry.payload,
                    next_attempt_at=now,
                    fair_at=entry.start + spacing * position,
                    # the sender's wake-up goes out on commit; the dispatcher takes over if lost
                    dispatched_at=now,
                )
                for entry in outgoing
                for position, endpoint in enumerate(entry.subscribers)
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )
    return sum(len(entry.subscribers) for entry in outgoing)


@dataclass(frozen=True)
class _Outgoing:
    """One message's deliveries: to ``subscribers``, the first standing at ``start``."""

    message: Message
    payload: dict[str, Any]
    subscribers: list[WebhookEndpoint]
    start: datetime


# The columns the set-based insert fills from its arrays (the others are constants or the
# database's defaults): per delivery, and per message.
_PER_DELIVERY = {"endpoint": "uuid", "handoff": "boolean"}
_PER_MESSAGE = {
    "company": "uuid",
    "job_event": "bigint",
    "event_id": "text",
    "events_id": "text",
    "object_id": "text",
    "payload": "text",  # the JSON text: serialized once per message, cast to jsonb once
}


def _insert_set_based(outgoing: list[_Outgoing], *, spacing: timedelta, now: datetime) -> None:
    """Every delivery of the batch in ONE ``INSERT ... SELECT`` over arrays (PostgreSQL).

    Two sets of arrays, sent in binary with the parameters bound on the server (no literal to
    build and escape, no Python object per delivery): one element per message (its company,
    ids, payload JSON and where its line starts) and one per delivery (its endpoint, handoff
    flag, message and position in the message's line, whose ``fair_at`` is the start plus the
    position times ``spacing``). Conflicts (a re-run) are skipped as ``bulk_create`` does.
    """
    if not outgoing:
        return
    meta = WebhookDelivery._meta
    qn = connection.ops.quote_name
    constants = {
        "next_attempt_at": now,
        # the sender's wake-up goes out on commit; the dispatcher takes over if lost
        "dispatched_at": now,
        "updated_at": now,
    }
    columns: list[str] = []
    values: list[str] = []
    params: list[Any] = []
    for model_field in meta.concrete_fields:
        name = model_field.name
        column = qn(str(model_field.column))
        if name == "id":
            values.append("gen_random_uuid()")
        elif name == "fair_at":
            values.append("m.start + d.position * %s")
            params.append(spacing)
        elif name == "payload":
            values.append("m.payload::jsonb")
        elif name == "created_at":
            # a microsecond apart, in the batch's order (as bulk_create's per-row clock reads
            # were): the console's lists keep them in the order they were made
            values.append("%s + (d.serial - 1) * interval '1 microsecond'")
            params.append(model_field.get_db_prep_save(now, connection))
        elif name in _PER_DELIVERY:
            values.append(f"d.{name}")
        elif name in _PER_MESSAGE:
            values.append(f"m.{name}")
        elif name in constants:
            values.append("%s")
            params.append(model_field.get_db_prep_save(constants[name], connection))
        elif model_field.has_db_default():
            continue  # the database writes its default
        else:
            values.append("%s")
            params.append(model_field.get_db_prep_save(model_field.get_default(), connection))
        columns.append(column)
    per_message = ", ".join(f"%b::{kind}[]" for kind in _PER_MESSAGE.values())
    per_delivery = ", ".join(f"%b::{kind}[]" for kind in _PER_DELIVERY.values())
    statement = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} "
        f"FROM unnest({per_message}, %b::timestamptz[]) "
        f"WITH ORDINALITY AS m({', '.join(_PER_MESSAGE)}, start, number) "
        f"JOIN unnest({per_delivery}, %b::integer[], %b::integer[]) "
        f"WITH ORDINALITY AS d({', '.join(_PER_DELIVERY)}, message, position, serial) "
        "ON d.message = m.number "
        "ON CONFLICT DO NOTHING"
    )
    endpoint_ids, handoffs, numbers, positions = [], [], [], []
    for number, entry in enumerate(outgoing, start=1):
        for position, endpoint in enumerate(entry.subscribers):
            endpoint_ids.append(endpoint.pk)
            handoffs.append(is_handoff(endpoint, entry.message.events_id))
            numbers.append(number)
            positions.append(position)
    messages = [entry.message for entry in outgoing]
    encoder = meta.get_field("payload").encoder
    params += [
        [m.company_id for m in messages],
        [m.job_event_id for m in messages],
        [m.event_id for m in messages],
        [m.events_id for m in messages],
        [str(m.object_id) for m in messages],
        [json.dumps(entry.payload, cls=encoder) for entry in outgoing],
        [entry.start for entry in outgoing],
        endpoint_ids,
        handoffs,
        numbers,
        positions,
    ]
    with hot_cursor(connection) as cursor:
        cursor.execute(statement, params)


SEND_DELIVERY_TASK = "webhooks.send_delivery"


def enqueue(ids: Iterable[Any]) -> None:
    """Queue one attempt per delivery (``config.outbox.publish``); once the broker refuses one
    (or is presumed down), the rest are left for the dispatcher (``dispatched_at`` cleared)."""
    ids = list(ids)
    for position, delivery_id in enumerate(ids):
        if not outbox.publish(SEND_DELIVERY_TASK, (str(delivery_id),)):
            WebhookDelivery.objects.filter(pk__in=ids[position:]).update(dispatched_at=None)
            return


def _in_lane(deliveries: Any, lane: str | None) -> Any:
    """The deliveries of ``deliveries`` that ``lane``'s sender takes (``webhooks.lanes``; None:
    all of them)."""
    mine = lanes.claim_filter(lane, company="company_id", waiting_since="next_attempt_at")
    return deliveries if mine is None else deliveries.filter(mine)


def _unclaimed_due(now: datetime, lane: str | None = None) -> Any:
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    return _in_lane(due, lane).filter(leases.free())


def dispatch_due_deliveries() -> int:
    """Wake each lane's batch sender when a due delivery of its lane has no message on its way
    (``webhooks.lanes``); how many were woken.

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
    woken = 0
    wide = sorted(lanes.wide_companies())
    for lane in lanes.LANES:
        lost = Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=now - REDISPATCH_AFTER)
        if lane == lanes.NARROW and wide:
            # a wide company's delivery the narrow lane may take has waited past the takeover
            # time: its wake-up went to the wide lane, which did not answer
            lost |= Q(company_id__in=wide)
        if _unclaimed_due(now, lane).filter(lost).exists() and wakeup_send(lane):
            woken += 1
    return woken


def due_deliveries_exist(lane: str | None = None) -> bool:
    """Whether a due delivery (of ``lane``; None: any) waits that nobody holds."""
    return bool(_unclaimed_due(timezone.now(), lane).exists())


def wakeup_send(lane: str = lanes.NARROW) -> bool:
    """Queue one wake-up for ``lane``'s batch sender unless one is on its way; True if queued.

    One outstanding wake-up per sender (``config.outbox.publish_wakeup``, the ``ops.Wakeup``
    row): one that nobody answers within ``WAKEUP_LOST_AFTER`` is presumed lost and sent again,
    ever more rarely while nobody answers.
    """
    return outbox.publish_wakeup(lanes.task(SENDER_TASK, lane), resend_lost=True)


def wakeup_soon(lane: str = lanes.NARROW) -> None:
    """Ask this process's wake-up thread to queue a wake-up for ``lane``'s batch sender (one
    outstanding, as ``wakeup_send``); never waits for the broker (``config.outbox.wake``)."""
    outbox.wake(lanes.task(SENDER_TASK, lane))


def wakeup_received(lane: str = lanes.NARROW) -> None:
    """A sender of ``lane`` started: none of its wake-ups is outstanding any more (the next one
    may go out)."""
    outbox.wakeup_consumed(lanes.task(SENDER_TASK, lane))


# --- attempts and outcomes --------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    number: int
    trigger: str
    lease_until: datetime
    # time.monotonic() by which the attempt's HTTP exchange must be over when it starts at once:
    # the claim time plus JOBTRAIL_WEBHOOK_TIMEOUT, so at least LEASE - TIMEOUT before the lease
    # ends. The batch sender starts an attempt later than its claim only while ``start_by`` has
    # not passed, and then gives it TIMEOUT from its start (see ``attempt_deadline``).
    deadline: float
    # time.monotonic() after which the attempt may no longer start: it could not end (TIMEOUT)
    # and be recorded (START_MARGIN) within the lease
    start_by: float
    # time.monotonic() at which the lease is over at the earliest (the database's clock ends it
    # at ``lease_until``; this process times itself by its own clock from before the claim)
    lease_ends: float

    def attempt_deadline(self, started: float) -> float:
        return min(started, self.start_by) + float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)


# Time kept at the end of a lease for recording the attempt after its deadline.
START_MARGIN = 5.0


def attempt_lease() -> timedelta:
    """How long a claim holds its delivery: the send deadline plus a margin (see settings)."""
    return timedelta(seconds=float(settings.JOBTRAIL_WEBHOOK_LEASE))


def _untried_trigger(claims: Iterable[Claim]) -> Any:
    """``next_trigger`` of deliveries given back untried (a paused endpoint, no time left to
    start it, a lost connection): a manual attempt this claim took (its claim wrote
    ``MANUAL_TAKEN`` over ``manual``) reads ``manual`` again. A claim that found the mark
    already there (an earlier sender died holding it) leaves it: the next claim abandons it."""
    took = [claim.delivery.pk for claim in claims if claim.trigger == AttemptTrigger.MANUAL]
    if not took:
        return F("next_trigger")
    return Case(
        When(pk__in=took, then=Value(AttemptTrigger.MANUAL.value)), default=F("next_trigger")
    )


def _claims(claimed: leases.Claimed[WebhookDelivery], *, claimed_at: float) -> list[Claim]:
    """The claims of ``claimed``; ``claimed_at``: ``time.monotonic()`` when the lease's ``now``
    was read, before the claim's statement (a statement that took seconds shortens the time
    left to start a send, never lengthens it past the lease)."""
    timeout = float(settings.JOBTRAIL_WEBHOOK_TIMEOUT)
    lease_ends = claimed_at + attempt_lease().total_seconds()
    start_by = lease_ends - timeout - START_MARGIN
    rows = sorted(claimed.rows, key=lambda row: (row.fair_at, row.created_at))
    manual = [row.pk for row in rows if row.next_trigger == AttemptTrigger.MANUAL]
    if manual:  # rare: one more statement only for claims that hold a manual attempt
        _mark_manual_taken(manual, until=claimed.until)
    return [
        Claim(
            delivery=row,
            endpoint=row.endpoint,
            number=row.attempts,
            trigger=row.next_trigger,
            lease_until=claimed.until,
            deadline=claimed_at + timeout,
            start_by=start_by,
            lease_ends=lease_ends,
        )
        for row in rows
    ]


def _mark_manual_taken(pks: list[Any], *, until: datetime) -> None:
    WebhookDelivery.objects.filter(pk__in=pks, locked_until=until).update(next_trigger=MANUAL_TAKEN)


def _claim(queryset: Any, *, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due deliveries of ``queryset``. The claim and the marks of the
    manual attempts it took commit together: a connection lost between them rolls the claim
    back (the deliveries are due again at once), never leaves them held, unmarked, until their
    leases end."""
    now, claimed_at = timezone.now(), time.monotonic()
    with transaction.atomic():
        return _claims(
            claimed=leases.claim(
                queryset.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now),
                duration=attempt_lease(),
                limit=limit,
                order_by=("fair_at",),
                values={"updated_at": now},
                increment=("attempts",),
                select_related=("endpoint",),
            ),
            claimed_at=claimed_at,
        )


def delivery_claim(*, delivery_id: Any) -> Claim | None:
    """Take a due pending delivery for one attempt; None if it is not due or someone has it."""
    claims = _claim(WebhookDelivery.objects.filter(pk=delivery_id), limit=1)
    return claims[0] if claims else None


def deliveries_claim_due(
    *,
    limit: int,
    skip_endpoints: Collection[Any] = (),
    only_endpoints: Collection[Any] | None = None,
    before: datetime | None = None,
    lane: str | None = None,
) -> list[Claim]:
    """Take up to ``limit`` due deliveries (oldest first) that nobody holds, for one attempt each.

    Two queries whatever ``limit`` (``config.leases.claim``: one UPDATE ... RETURNING over rows
    locked with SKIP LOCKED, then their endpoints), so senders running at once take disjoint
    batches without waiting for each other. ``skip_endpoints``: leave those endpoints' rows;
    ``only_endpoints``: take only theirs. ``before``: take only rows standing earlier than that
    on the ``fair_at`` clock. ``lane``: take only that lane's (``webhooks.lanes``).
    """
    if lanes.claims_nothing(lane):
        return []
    deliveries = _in_lane(WebhookDelivery.objects.all(), lane)
    if before is not None:
        deliveries = deliveries.filter(fair_at__lt=before)
    if skip_endpoints:
        deliveries = deliveries.exclude(endpoint_id__in=list(skip_endpoints))
    if only_endpoints is not None:
        deliveries = deliveries.filter(endpoint_id__in=list(only_endpoints))
    return _claim(deliveries, limit=limit)


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str = ""
    error: str = ""
    retry_after: str | None = None
    # Why no answer came (``hooks.UNREACHABLE`` or ``hooks.TIMEOUT``); "" when one did.
    error_kind: str = ""
    # The request headers sent (signature redacted) and the answer's (bounded), as logged.
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)


# A hand-off answered with one of these is refused by the integration: final after
# JOBTRAIL_HANDOFF_AUTH_ATTEMPTS attempts, not after the whole schedule.
AUTH_REFUSED = frozenset({401, 403})


def _retry_schedule(*, handoff: bool) -> list[int]:
    """Seconds between attempts: a hand-off's own, shorter schedule, or the webhooks'."""
    if handoff:
        return settings.JOBTRAIL_HANDOFF_RETRY_SCHEDULE
    return settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE


def retry_after_seconds(value: str | None) -> int | None:
    """A ``Retry-After`` answer in seconds from now (RFC 9110: ``delay-seconds`` or an
    HTTP-date), or None when it is neither. Only ASCII digits count (``str.isdigit`` takes
    ``²``, which ``int`` refuses), and at most 10 past leading zeros (``int`` refuses
    thousands; more is "later than any bound")."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"  # leading zeros are allowed (RFC 9110)
        return int(digits) if len(digits) <= 10 else 10**10
    moment = parse_http_date_safe(value) if value.isascii() else None
    if moment is None:
        return None
    return max(0, math.ceil(moment - time.time()))


def _retry_delay(number: int, retry_after: str | None, *, handoff: bool = False) -> float | None:
    """Seconds until the next try, or None when the schedule is used up.

    A hand-off has its own, shorter schedule (``JOBTRAIL_HANDOFF_RETRY_SCHEDULE``): its job
    waits pending for it, and fails when it is over.
    """
    schedule = _retry_schedule(handoff=handoff)
    if number > len(schedule):
        return None
    asked = retry_after_seconds(retry_after)
    if asked is not None:
        low, high = RETRY_AFTER_BOUNDS
        return float(min(max(asked, low), high))
    base = schedule[number - 1]
    return base * random.uniform(0.8, 1.2)


GONE_REASON = "The receiver answered 410 Gone; the endpoint was disabled."
USED_UP_REASON = (
    "The retry schedule's attempts were used up without an outcome recorded: the worker "
    "sending them stopped (killed or crashed) during each of the last ones, or the database "
    "was unavailable until their leases ended."
)
MANUAL_USED_UP_REASON = (
    "The manual attempt was taken without an outcome recorded: the worker sending it stopped "
    "(killed or crashed) during it, or the database was unavailable until its lease ended. "
    "Redeliver it to try again."
)


def used_up_reason(claim: Claim) -> str:
    """Why ``claim`` must not be sent, or "": its attempts were used up without outcomes.

    A scheduled claim past the schedule's last attempt: each claim counts an attempt (the sender
    may have reached the receiver before it was killed), so this happens only when the attempts
    before it never got an outcome recorded. A manual attempt (one attempt) claimed again after
    a sender took it (``MANUAL_TAKEN``). Such a claim is abandoned, not sent: a delivery whose
    sending kills the worker must not be sent again every lease for ever."""
    if claim.trigger == MANUAL_TAKEN:
        return MANUAL_USED_UP_REASON
    if claim.trigger != AttemptTrigger.SCHEDULED:
        return ""
    schedule = _retry_schedule(handoff=claim.delivery.handoff)
    if claim.number > len(schedule) + 1:  # the first attempt, then one per step
        return USED_UP_REASON
    return ""


def _outcome(claim: Claim, result: AttemptResult, now: datetime) -> dict[str, Any]:
    """The delivery's new state after the attempt: delivered, retry later, or failed.

    A retry is a row due at its time, never a broker message: a running batch sender takes it
    when it is due, else the dispatcher wakes one (``dispatched_at`` is cleared for that).
    """
    code = result.status_code
    fields: dict[str, Any] = {
        "last_status_code": code,
        "last_error": result.error,
        "locked_until": None,
        "next_trigger": AttemptTrigger.SCHEDULED,
        "status": DeliveryStatus.FAILED,
        "next_attempt_at": None,
        "dispatched_at": None,
        "updated_at": now,
        "last_attempt_at": now,  # the same for a whole batch: its outcomes still share UPDATEs
    }
    if code is not None and 200 <= code < 300:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
    elif code == 410:
        pass  # failed; the endpoint is disabled
    elif code is not None and 300 <= code < 400:
        fields["last_error"] = "The receiver answered a redirect; redirects are not followed."
    elif claim.trigger == AttemptTrigger.MANUAL:
        pass  # a manual redelivery is one attempt
    elif (
        claim.delivery.handoff
        and code in AUTH_REFUSED
        and claim.number >= settings.JOBTRAIL_HANDOFF_AUTH_ATTEMPTS
    ):
        pass  # the integration refuses us: no point waiting out the schedule
    else:
        delay = _retry_delay(claim.number, result.retry_after, handoff=claim.delivery.handoff)
        if delay is not None:
            retry_at = now + timedelta(seconds=delay)
            # a retry stands in line from its time (fair_at never before next_attempt_at)
            fields.update(status=DeliveryStatus.PENDING, next_attempt_at=retry_at, fair_at=retry_at)
    return fields


METRIC_OUTCOMES = {
    DeliveryStatus.DELIVERED: metrics.OUTCOME_DELIVERED,
    DeliveryStatus.PENDING: metrics.OUTCOME_RETRYING,
    DeliveryStatus.FAILED: metrics.OUTCOME_FAILED,
}


def _storable(result: AttemptResult) -> AttemptResult:
    """``result`` with the NUL characters a receiver sent replaced: PostgreSQL refuses them
    in text and jsonb, and one refused row would roll back the whole batch's outcomes."""
    headers = (result.request_headers, result.response_headers)
    texts = chain(
        (result.response_body, result.error),
        (part for pairs in headers for pair in pairs.items() for part in pair),
    )
    if not any("\x00" in text for text in texts):  # stops at the first NUL
        return result

    def clean(text: str) -> str:
        return text.replace("\x00", "\ufffd")

    return replace(
        result,
        response_body=clean(result.response_body),
        error=clean(result.error),
        request_headers={clean(k): clean(v) for k, v in result.request_headers.items()},
        response_headers={clean(k): clean(v) for k, v in result.response_headers.items()},
    )


def _lock_batch(outcomes: Sequence[tuple[Claim, AttemptResult]]) -> tuple[set[Any], set[Any]]:
    """Lock the batch's deliveries (one SELECT, primary-key order, as every other locker of
    them: an endpoint DELETE locks its deliveries so too, so neither can wait for the other in a
    cycle); return those still held by their claim and those that still exist. An endpoint
    deleted while its delivery was being sent takes the delivery with it: its attempt cannot
    be logged, and the batch's others must be."""
    leases_of = {claim.delivery.pk: claim.lease_until for claim, _ in outcomes}
    rows = WebhookDelivery.objects.filter(pk__in=among(WebhookDelivery, list(leases_of)))
    locked = rows.select_for_update(no_key=True).order_by("pk")
    found = list(locked.values_list("pk", "status", "locked_until"))
    mine = {
        pk
        for pk, status, until in found
        if status == DeliveryStatus.PENDING and until == leases_of[pk]
    }
    existing = {pk for pk, _, _ in found}
    for pk in leases_of.keys() - existing:
        logger.info("delivery %s was deleted while it was sent; its attempt is not logged", pk)
    return mine, existing


@transaction.atomic
def deliveries_record_attempts(
    outcomes: Sequence[tuple[Claim, AttemptResult]], *, again: bool = False
) -> None:
    """Log the attempts and decide each delivery's fate, in a few queries for the whole batch.

    Every attempt is logged (one INSERT). Deliveries still held by the claim (locked, one
    SELECT) get their new state: rows with the same outcome share one UPDATE (a batch of
    successes is one UPDATE), the odd ones (retries: each has its own time) one bulk UPDATE. A
    delivery whose lease ran out and went to another sender (or a redelivery) keeps the newer
    owner's state.
    """
    if not outcomes:
        return
    now = timezone.now()
    outcomes = [(claim, _storable(result)) for claim, result in outcomes]
    mine, existing = _lock_batch(outcomes)
    logged: set[tuple[Any, int, datetime]] = set()
    if again:  # a try whose commit's answer was lost may have logged them: not twice
        logged = set(
            WebhookAttempt.objects.filter(
                delivery_id__in=among(WebhookDelivery, list(existing))
            ).values_list("delivery_id", "number", "started_at")
        )
    insert_many(
        WebhookAttempt,
        [
            {
                "delivery_id": claim.delivery.pk,
                "number": claim.number,
                "trigger": claim.trigger,
                "started_at": result.started_at,
                "duration_ms": result.duration_ms,
                "status_code": result.status_code,
                "response_body": result.response_body[:RESPONSE_BODY_LIMIT],
                "error": result.error,
                "url": claim.endpoint.url,
                "request_headers": result.request_headers,
                "response_headers": result.response_headers,
            }
            for claim, result in outcomes
            if claim.delivery.pk in existing
            and (claim.delivery.pk, claim.number, result.started_at) not in logged
        ],
    )
    groups: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    gone: set[Any] = set()
    handoffs_failed: list[hooks.HandoffFailure] = []
    handoff_endpoints: dict[Any, Any] = {}  # a failed hand-off's delivery -> its endpoint
    observed: list[metrics.AttemptObservation] = []
    for claim, result in outcomes:
        first = claim.number == 1 and claim.trigger == AttemptTrigger.SCHEDULED
        observation = metrics.AttemptObservation(
            duration_ms=result.duration_ms,
            outcome="",
            first=first,
            payload=claim.delivery.payload if first else None,
            started_at=result.started_at,
        )
        observed.append(observation)
        if claim.delivery.pk not in mine:
            logger.warning(
                "attempt %s of delivery %s finished after its lease",
                claim.number,
                claim.delivery.pk,
            )
            continue
        fields = _outcome(claim, result, now)
        observation.outcome = METRIC_OUTCOMES[fields["status"]]
        groups.setdefault(tuple(sorted(fields.items())), []).append(claim.delivery.pk)
        if result.status_code == 410:
            gone.add(claim.endpoint.pk)
        if claim.delivery.handoff and fields["status"] == DeliveryStatus.FAILED:
            handoff_endpoints[claim.delivery.pk] = claim.endpoint.pk
            handoffs_failed.append(
                hooks.HandoffFailure(
                    delivery_id=claim.delivery.pk,
                    job_id=claim.delivery.object_id,
                    attempts=claim.number,
                    status_code=result.status_code,
                    error=fields["last_error"],
                    error_kind="" if result.status_code is not None else result.error_kind,
                )
            )
    singles: dict[tuple[str, ...], list[WebhookDelivery]] = {}
    for key, pks in groups.items():
        fields = dict(key)
        if len(pks) > 1:
            WebhookDelivery.objects.filter(pk__in=among(WebhookDelivery, pks)).update(**fields)
        else:
            singles.setdefault(tuple(fields), []).append(WebhookDelivery(pk=pks[0], **fields))
    for names, rows in singles.items():
        if len(rows) == 1:
            WebhookDelivery.objects.filter(pk=rows[0].pk).update(
                **{name: getattr(rows[0], name) for name in names}
            )
        else:
            WebhookDelivery.objects.bulk_update(rows, list(names))
    if gone:
        # (not one its company deleted meanwhile: "gone" would fail its pending hand-offs)
        WebhookEndpoint.objects.live().filter(pk__in=gone).update(
            is_active=False, disabled_reason=GONE_REASON, updated_at=now
        )
    if handoffs_failed:
        # none to an endpoint its company deleted while it was sent: that fails no job (its
        # delivery goes with the endpoint, as a hand-off still queued does)
        deleted = set(
            WebhookEndpoint.objects.deleted()
            .filter(pk__in=set(handoff_endpoints.values()))
            .values_list("pk", flat=True)
        )
        handoffs_failed = [
            f for f in handoffs_failed if handoff_endpoints[f.delivery_id] not in deleted
        ]
    # the jobs app fails the pending jobs of these hand-offs, in this transaction
    hooks.handoff_failed(handoffs_failed)
    transaction.on_commit(partial(metrics.attempts_observe, observed), robust=True)


def delivery_record_attempt(*, claim: Claim, result: AttemptResult) -> WebhookDelivery:
    """Log one attempt and decide (``deliveries_record_attempts`` for one)."""
    deliveries_record_attempts([(claim, result)])
    return WebhookDelivery.objects.get(pk=claim.delivery.pk)


PAUSED_RECHECK = timedelta(minutes=5)


def _by_lease(claims: Iterable[Claim]) -> dict[datetime, list[Any]]:
    groups: dict[datetime, list[Any]] = {}
    for claim in claims:
        groups.setdefault(claim.lease_until, []).append(claim.delivery.pk)
    return groups


def deliveries_release(claims: Iterable[Claim]) -> None:
    """Give claimed deliveries back untried (the attempt was never started): due as before."""
    claims = list(claims)
    for until, pks in _by_lease(claims).items():
        leases.release(
            WebhookDelivery.objects.all(),
            pks,
            until=until,
            attempts=F("attempts") - 1,
            dispatched_at=None,
            next_trigger=_untried_trigger(claims),
        )


def deliveries_defer(claims: Iterable[Claim]) -> None:
    """Put claimed deliveries back, untried, for later (their endpoint is paused)."""
    claims = list(claims)
    now = timezone.now()
    for until, pks in _by_lease(claims).items():
        leases.release(
            WebhookDelivery.objects.all(),
            pks,
            until=until,
            next_attempt_at=now + PAUSED_RECHECK,
            fair_at=now + PAUSED_RECHECK,
            dispatched_at=None,
            attempts=F("attempts") - 1,
            next_trigger=_untried_trigger(claims),
            updated_at=now,
        )


@transaction.atomic
def deliveries_abandon(
    claims: Iterable[Claim], *, reason: str, error_kind: str = hooks.DISABLED
) -> None:
    """Fail claimed deliveries without an attempt (their endpoint is gone or disabled).

    Hand-offs among them fail for good: the hooks hear of those still held by their claim.
    """
    claims = list(claims)
    handoffs = [claim for claim in claims if claim.delivery.handoff]
    mine = leases.held(
        WebhookDelivery.objects.all(),
        {claim.delivery.pk: claim.lease_until for claim in handoffs},
        lock=True,
    )
    now = timezone.now()
    for until, pks in _by_lease(claims).items():
        leases.release(
            WebhookDelivery.objects.all(),
            pks,
            until=until,
            status=DeliveryStatus.FAILED,
            next_attempt_at=None,
            next_trigger=AttemptTrigger.SCHEDULED,
            last_error=reason,
            attempts=F("attempts") - 1,
            updated_at=now,
        )
    transaction.on_commit(partial(metrics.deliveries_abandoned_observe, len(claims)), robust=True)
    hooks.handoff_failed(
        [
            hooks.HandoffFailure(
                delivery_id=claim.delivery.pk,
                job_id=claim.delivery.object_id,
                attempts=claim.number - 1,
                status_code=None,
                error=reason,
                error_kind=error_kind,
            )
            for claim in handoffs
            if claim.delivery.pk in mine
        ]
    )


def delivery_defer(*, claim: Claim) -> None:
    deliveries_defer([claim])


def delivery_abandon(*, claim: Claim, reason: str) -> None:
    deliveries_abandon([claim], reason=reason)


# --- redelivery -------------------------------------------------------------------------------


def _redeliver(deliveries: Any) -> int:
    """Queue one manual attempt for each finished (delivered or failed) delivery."""
    now = timezone.now()
    with transaction.atomic():
        # locked, and re-checked at the lock: a delivery another redelivery made pending (and
        # a sender may hold) meanwhile is left alone, its lease with it; in primary-key order,
        # as the recorder and an endpoint DELETE lock deliveries (never a cycle with them)
        finished = deliveries.exclude(status=DeliveryStatus.PENDING).order_by("pk")
        finished = finished.select_for_update()
        ids = list(finished.values_list("pk", flat=True))
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            fair_at=now,
            next_trigger=AttemptTrigger.MANUAL,
            locked_until=None,
            dispatched_at=now,
            updated_at=now,
        )
        transaction.on_commit(lambda: enqueue(ids), robust=True)
    return len(ids)


def _refuse_paused(endpoint_id: Any, *, what: str) -> None:
    """``EndpointPaused`` unless the endpoint (as stored now) is active: a paused endpoint
    holds what is queued for it, one disabled on a 410 fails it again at once, without an
    attempt; either way "queued" would not be true."""
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    if endpoint.deleted_at is not None:
        raise EndpointPaused(
            f"Its endpoint {endpoint_origin(endpoint)} was deleted by its company: nothing more "
            "is sent to it, and its deliveries are being deleted."
        )
    if not endpoint.is_active:
        reason = f" ({endpoint.disabled_reason})" if endpoint.disabled_reason else ""
        raise EndpointPaused(
            f"Its endpoint {endpoint_origin(endpoint)} is paused{reason}; resume the endpoint "
            f"{what} (what the endpoint holds goes out then)."
        )


def delivery_send_now(*, delivery: WebhookDelivery) -> str:
    """Staff: attempt a delivery now, whatever its state; what was done: "redelivered" or "due now".

    A delivered or failed delivery gets one manual attempt (``_redeliver``). One still
    retrying is made due now: its next scheduled attempt happens now, counted as such, so if it
    fails the schedule carries on from there (its attempt count is kept, not reset). One being
    sent right now is left to that attempt (``DeliveryInProgress``). One whose endpoint is
    paused is not sent (``EndpointPaused``: a paused endpoint holds it, one disabled on a 410
    would fail it again at once, without an attempt): resume the endpoint.
    """
    _refuse_paused(delivery.endpoint_id, what="to send it")
    now = timezone.now()
    with transaction.atomic():
        row = (
            WebhookDelivery.objects.select_for_update()
            .annotate(lease_free=ExpressionWrapper(leases.free(), output_field=BooleanField()))
            .get(pk=delivery.pk)
        )
        if row.status != DeliveryStatus.PENDING:
            _redeliver(WebhookDelivery.objects.filter(pk=row.pk))
            return "redelivered"
        if not row.lease_free:  # on the database's clock, as the leases themselves
            raise DeliveryInProgress("This delivery is being sent right now; wait for its answer.")
        row.next_attempt_at = row.fair_at = row.dispatched_at = now
        if row.next_trigger == MANUAL_TAKEN:  # its sender died holding it: one more manual try
            row.next_trigger = AttemptTrigger.MANUAL
        row.save(
            update_fields=[
                "next_attempt_at",
                "fair_at",
                "dispatched_at",
                "next_trigger",
                "updated_at",
            ]
        )
        transaction.on_commit(lambda: enqueue([row.pk]), robust=True)
    return "due now"


def handoff_resend(*, delivery: WebhookDelivery) -> str:
    """Send a job's hand-off again now (staff): ``delivery_send_now`` for a hand-off."""
    if not delivery.handoff:
        raise DeliveryInProgress("This delivery is not a hand-off.")
    return delivery_send_now(delivery=delivery)


TEST_EVENT = "webhooks.test"


@transaction.atomic
def endpoint_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a signed test event (``webhooks.test``) for one endpoint: one manual attempt.

    It is a delivery like any other (its attempt is logged and shown), sent to this endpoint
    only and never retried; ``object_id`` is the endpoint's id. An inactive endpoint refuses it,
    a deleted one answers ``EndpointNotFound`` (read again under its lock).
    """
    endpoint = _locked_endpoint(endpoint.pk)
    if not endpoint.is_active:
        raise InvalidEndpoint("This endpoint is paused; resume it to send a test event.")
    now = timezone.now()
    message_id = f"msg_test_{secrets.token_hex(12)}"
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        company_id=endpoint.company_id,
        event_id=message_id,
        events_id=TEST_EVENT,
        object_id=str(endpoint.pk),
        payload={
            "event": {
                "dt": now.isoformat(),
                "events_id": TEST_EVENT,
                "object_id": str(endpoint.pk),
            },
            "data": {"message": "A test event from Jobtrail: your endpoint is reachable."},
        },
        next_attempt_at=now,
        next_trigger=AttemptTrigger.MANUAL,
        dispatched_at=now,
    )
    transaction.on_commit(lambda: enqueue([delivery.pk]), robust=True)
    return delivery


def endpoint_redeliver_failed(*, endpoint: WebhookEndpoint, since: datetime) -> int:
    """Send again everything that failed for ``endpoint`` since ``since``; return how many.

    Refused for a paused endpoint (``EndpointPaused``), as a single redelivery is: resume it
    first (what it holds goes out then), and redeliver after."""
    _refuse_paused(endpoint.pk, what="to send them")
    return _redeliver(
        WebhookDelivery.objects.filter(
            endpoint=endpoint, status=DeliveryStatus.FAILED, created_at__gte=since
        )
    )


class Purged(NamedTuple):
    attempts: int
    deliveries: int
    done: bool  # False: the budget ran out with old rows left


def deliveries_purge(
    *, older_than: timedelta, budget: float, failed_older_than: timedelta | None = None
) -> Purged:
    """Delete delivered deliveries created more than ``older_than`` ago and failed ones
    created more than ``failed_older_than`` ago (None: failed ones stay, to be redelivered),
    with their attempt log, then attempts older than ``older_than`` of the deliveries kept;
    a batch per transaction (``config.sql.delete_oldest``), for at most ``budget`` seconds.
    It first finishes deleting deleted endpoints (should the message ``endpoint_delete``
    published have been lost)."""
    now = timezone.now()
    deadline = time.monotonic() + budget
    if not endpoints_delete_pending(deadline=deadline).done:
        return Purged(0, 0, False)
    passes = [(DeliveryStatus.DELIVERED, now - older_than)]
    if failed_older_than is not None:
        passes.append((DeliveryStatus.FAILED, now - failed_older_than))
    attempts = deliveries = 0
    for status, cutoff in passes:
        gone = sql.delete_oldest(
            WebhookDelivery.objects.filter(status=status, created_at__lt=cutoff),
            order_by="created_at",
            deadline=deadline,
            dependents=[(WebhookAttempt, "delivery")],
        )
        attempts, deliveries = attempts + gone.dependents, deliveries + gone.rows
        if not gone.done:
            return Purged(attempts, deliveries, False)
    old = sql.delete_oldest(
        WebhookAttempt.objects.filter(started_at__lt=now - older_than),
        order_by="started_at",
        deadline=deadline,
    )
    return Purged(attempts + old.rows, deliveries, old.done)
