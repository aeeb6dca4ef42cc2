"""The relay: turns logged job events into their effects, in the worker.

The ``JobEvent`` table is the outbox. A job change commits its event and publishes one wake-up
for ``jobs.relay_events``; the relay then, in ONE transaction per batch:

1. claims the oldest unrelayed events (``relayed_at IS NULL``, ``FOR UPDATE SKIP LOCKED``,
   ``ORDER BY id``, ``LIMIT n``: a partial index holds only unrelayed rows);
2. fans each out to its company's subscribed active endpoints (``WebhookDelivery`` rows, unique
   per (event, endpoint), inserted with ``ON CONFLICT DO NOTHING``), the payload built from the
   snapshot of the job written with the event;
3. requests the report builds that completions and late push results call for;
4. marks the events relayed (and drops their snapshots);

and after the commit wakes the delivery sender and the report builder.

Why this is safe:

- *Out-of-order commits.* There is no high-water mark: the claim takes every committed
  unrelayed row, so an event whose transaction commits after a later id's was relayed is
  simply found by the next run.
- *Never twice.* Claimed rows stay locked until the batch commits; a concurrent relay skips
  them, and after the commit they are no longer unrelayed. A crash anywhere before the commit
  rolls the whole batch back (deliveries, report requests, marks): the next run redoes it.
- *Lost wake-ups.* ``relay_sweep`` (beat, every few seconds) wakes the relay when an event has
  waited longer than ``SWEEP_AFTER`` and no wake-up is outstanding (or the outstanding one is
  presumed lost: ``config.outbox.publish_wakeup``).
- *One company's lock does not hold the others.* A batch waits at most
  ``JOBTRAIL_RELAY_LOCK_TIMEOUT`` for a row lock (PostgreSQL ``lock_timeout``): an endpoint
  being deleted holds its row while the DELETE removes its deliveries, and a fan-out to it
  waits at commit (its foreign keys are checked then). Past that the batch rolls back and its
  companies are relayed apart, one transaction each; a company whose relay waits again is held
  back ``HOLD_BACK`` seconds by this process (its events stay unrelayed, in order, and are
  claimed again after that), the others are relayed at once.
"""

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac

from config import leases, metrics
from config.outbox import publish_on_commit, publish_wakeup
from config.rows import among
from reports.services import reports_request
from webhooks import lanes
from webhooks.lanes import companies_fanning_out_wide
from webhooks.services import SENDER_TASK, Message, deliveries_fan_out

from .models import EventStatus, Job, JobEvent, JobEventKind, JobStatus
from .representation import (
    job_event_representation,
    job_representation,
    snapshot_representation,
)
from .services import RELAY_TASK

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# A batch refused at commit (a row it refers to deleted meanwhile) is relayed again this often
REFUSED_COMMITS = 3
BUDGET = 20.0  # seconds one relay task works before it hands on to a fresh message
SWEEP_AFTER = timedelta(seconds=5)
REPORTABLE = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS})
# A company whose relay met a lock past JOBTRAIL_RELAY_LOCK_TIMEOUT is not claimed for this long
# (by this process): its events wait, the other companies' are relayed.
HOLD_BACK = 5.0
# PostgreSQL's SQLSTATE for a lock wait cut short by lock_timeout
LOCK_NOT_AVAILABLE = "55P03"
# webhook-id of an event's deliveries: a keyed hash of the event's id (stored on each delivery,
# so the same on every retry): the event ids count every company's events, and a plain hash of
# one could be reversed by trying ids in turn
WEBHOOK_ID_SALT = "jobtrail.webhooks.webhook-id"

TIMELINE_WEBHOOKS: dict[str, str] = {
    EventStatus.CREATED: "jobs.create",
    EventStatus.PROGRESS: "jobs.update",
    EventStatus.STARTED: "jobs.started",
    EventStatus.COMPLETED: "jobs.completed",
    EventStatus.COMPLETED_WITH_ERRORS: "jobs.completed_with_errors",
    EventStatus.FAILED: "jobs.failed",
}
KIND_WEBHOOKS: dict[str, str] = {
    JobEventKind.PUSH_RESULT: "jobs.push_results.create",
    JobEventKind.REPORT_READY: "jobs.report.ready",
}


def events_id_of(event: JobEvent) -> str:
    """The webhook event id (``jobs.completed``…) a logged event fires."""
    if event.kind == JobEventKind.TIMELINE:
        return TIMELINE_WEBHOOKS[event.status]
    return KIND_WEBHOOKS[event.kind]


def webhook_id_of(event: JobEvent) -> str:
    digest = salted_hmac(WEBHOOK_ID_SALT, str(event.pk), algorithm="sha256").hexdigest()
    return "msg_" + digest[:32]


def webhook_data(event: JobEvent, *, zone: tzinfo | None = None) -> dict[str, Any]:
    """The ``data`` of the event's webhook: the job as of the event, plus the event's own part.

    ``zone``: the current time zone, looked up once for a batch (a context variable read)."""
    if event.snapshot is not None:
        data = dict(snapshot_representation(event.snapshot, zone=zone))
    else:  # logged without a snapshot (by hand): the job as it is now
        logger.warning("job event %s has no snapshot; using the current job", event.pk)
        data = job_representation(Job.objects.select_related("report").get(pk=event.job_id))
    if event.kind == JobEventKind.TIMELINE:
        data["job_event"] = job_event_representation(event, zone=zone)
    elif event.kind == JobEventKind.PUSH_RESULT:
        data["push_result"] = event.data
    return data


# --- the steps of one batch (module functions: the crash tests interrupt each) ---------------


def _unrelayed(lane: str | None) -> Any:
    """The events not relayed yet that ``lane`` relays (``webhooks.lanes``; None: all)."""
    unrelayed = JobEvent.objects.filter(relayed_at__isnull=True)
    mine = lanes.claim_filter(lane, company="job__company_id", waiting_since="created_at")
    return unrelayed if mine is None else unrelayed.filter(mine)


def _claim(
    batch_size: int,
    *,
    lane: str | None = None,
    only: set[int] | None = None,
    skip_companies: Collection[Any] = (),
) -> list[JobEvent]:
    """Lock the oldest unrelayed committed events of ``lane`` (of ``only``, if given; not those
    of ``skip_companies``) no other relay holds."""
    if lanes.claims_nothing(lane):
        return []
    unrelayed = _unrelayed(lane)
    if only is not None:
        unrelayed = unrelayed.filter(pk__in=sorted(only))
    if skip_companies:
        unrelayed = unrelayed.exclude(job__company_id__in=list(skip_companies))
    return list(
        leases.locked(
            unrelayed.select_related("actor").annotate(
                company_id=F("job__company_id"), job_status=F("job__status")
            ),
            limit=batch_size,
            order_by=("id",),
        )
    )


def _fan_out(events: list[JobEvent]) -> int:
    zone = timezone.get_current_timezone()
    return deliveries_fan_out(
        messages=[
            Message(
                company_id=event.company_id,  # type: ignore[attr-defined]
                events_id=events_id_of(event),
                object_id=event.job_id,
                event_id=webhook_id_of(event),
                dt=event.created_at,
                data=partial(webhook_data, event, zone=zone),
                job_event_id=event.pk,
            )
            for event in events
        ]
    )


def _request_reports(events: list[JobEvent]) -> int:
    """Request the builds: a completion, or a push result that arrived after completion."""
    job_ids = []
    for event in events:
        if event.kind == JobEventKind.TIMELINE:
            wanted = event.status in REPORTABLE
        elif event.kind == JobEventKind.PUSH_RESULT:
            # the job's status when the result was stored (its snapshot): a late result
            wanted = (event.snapshot or {}).get("status") in REPORTABLE
        else:
            wanted = False
        if wanted:
            job_ids.append(event.job_id)
    return reports_request(job_ids=job_ids)  # it drops repeats and takes the rows in order


def _mark_relayed(events: list[JobEvent]) -> None:
    JobEvent.objects.filter(pk__in=among(JobEvent, [event.pk for event in events])).update(
        relayed_at=timezone.now(), snapshot=None
    )


def relay_batch(*, batch_size: int = BATCH_SIZE, lane: str = lanes.NARROW) -> int:
    """Relay up to ``batch_size`` events of ``lane``; return how many.

    A batch whose commit finds a row it refers to deleted meanwhile (an endpoint deleted while
    the batch fanned out to it: ``webhooks.services.endpoint_delete``) rolls back and is
    relayed again at once, up to ``REFUSED_COMMITS`` times.
    """
    refused = 0
    while True:
        try:
            return _relay_batch(batch_size, lane)
        except IntegrityError:
            refused += 1
            if refused >= REFUSED_COMMITS or transaction.get_connection().in_atomic_block:
                raise
            logger.info("a relay batch referred to a row deleted meanwhile; relaying it again")


class _HeldBack:
    """Companies whose relay met a lock, each until when (``time.monotonic()``); per process."""

    def __init__(self) -> None:
        self._until: dict[Any, float] = {}
        self._lock = threading.Lock()

    def companies(self) -> set[Any]:
        now = time.monotonic()
        with self._lock:
            for company in [c for c, until in self._until.items() if until <= now]:
                del self._until[company]
            return set(self._until)

    def hold(self, company: Any) -> None:
        with self._lock:
            self._until[company] = time.monotonic() + HOLD_BACK

    def clear(self) -> None:
        with self._lock:
            self._until.clear()


held_back = _HeldBack()


def _bound_lock_waits() -> None:
    """In the current transaction, wait at most ``JOBTRAIL_RELAY_LOCK_TIMEOUT`` for a lock.

    Only in a transaction of the relay's own (the outermost): in a caller's, the setting would
    outlive the relay, and the batch could not be relayed apart anyway."""
    timeout = float(settings.JOBTRAIL_RELAY_LOCK_TIMEOUT)
    if timeout <= 0 or connection.vendor != "postgresql" or len(connection.atomic_blocks) > 1:
        return
    with connection.cursor() as cursor:
        milliseconds = max(1, round(timeout * 1000))  # ("0ms" would turn it off)
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{milliseconds}ms"])


def _met_a_lock(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _relay_batch(batch_size: int, lane: str) -> int:
    """Relay up to ``batch_size`` events, not those of companies held back; return how many it
    took: relayed, or (after a lock wait) held back with their company, so that a caller's
    loop goes on with the other companies' events.

    A batch that waited too long for a lock (``JOBTRAIL_RELAY_LOCK_TIMEOUT``) is rolled back
    and relayed company by company (``_relay_apart``). One that waited before it claimed
    anything (a table lock: a migration) relays nothing this time.
    """
    progress = _Progress()
    try:
        return _relay_together(batch_size, lane, progress)
    except OperationalError as exc:
        if not _met_a_lock(exc) or transaction.get_connection().in_atomic_block:
            raise
    if not progress.claimed:
        logger.info("the relay waits for a lock on its tables; it relays again later")
        return 0
    logger.info("a relay batch waited for a lock; relaying its companies apart")
    _relay_apart(progress.claimed)
    return progress.committed + len(progress.claimed)


@dataclass
class _Progress:
    """What ``_relay_together`` has done so far: the events of its open transaction, and how
    many it committed before it."""

    claimed: list[JobEvent] = field(default_factory=list)
    committed: int = 0


def _relay_apart(events: list[JobEvent]) -> None:
    """Relay ``events`` (claimed by a batch that rolled back) in one transaction per company;
    hold back a company whose transaction waits too long for a lock again.

    A batch of one company is held back at once (its own lock: waiting again is pointless).
    Two companies in a row that wait mean a lock that is not one company's (a table's): the
    rest are left for a later run, not waited for one by one."""
    by_company: dict[Any, set[int]] = {}
    for event in events:
        by_company.setdefault(event.company_id, set()).add(event.pk)  # type: ignore[attr-defined]
    if len(by_company) == 1:
        _hold_back(next(iter(by_company)))
        return
    waited = 0
    for company, pks in by_company.items():
        try:
            with transaction.atomic():
                _bound_lock_waits()
                mine = _claim(len(pks), only=pks)
                if mine:
                    _relay(mine)
            waited = 0
        except OperationalError as exc:
            if not _met_a_lock(exc):
                raise
            _hold_back(company)
            waited += 1
            if waited == 2:
                logger.info("two companies' relays in a row wait for a lock; relaying later")
                break


def _hold_back(company: Any) -> None:
    held_back.hold(company)
    logger.warning(
        "the relay of company %s's events waits for a lock (an endpoint of it being deleted?): "
        "held back %.0f s by this process, the other companies' events go on",
        company,
        HOLD_BACK,
    )


def _relay_together(batch_size: int, lane: str, progress: _Progress) -> int:
    """Relay up to ``batch_size`` events; return how many.

    One transaction, except when the batch holds events of a company that fans out wide
    (``WIDE_FAN_OUT`` endpoints or more) beside other companies' events: the others commit
    first, on their own, and the wide company's events follow in a second transaction. A quiet
    company's event claimed beside a 1,000-endpoint fan-out then does not wait for its INSERT.
    (Between the two, another relay may take the wide events: the second claim then finds them
    gone. A crash between the two leaves them unrelayed for the next run.)
    """
    with transaction.atomic():
        _bound_lock_waits()
        events = _claim(batch_size, lane=lane, skip_companies=held_back.companies())
        if not events:
            return 0
        progress.claimed = events  # for _relay_apart, should the commit wait too long for a lock
        later = _wide_part(events)
        _relay(events if not later else [e for e in events if e.pk not in later])
    if not later:
        return len(events)
    progress.claimed = [e for e in events if e.pk in later]
    progress.committed = len(events) - len(later)
    with transaction.atomic():
        _bound_lock_waits()
        wide = _claim(len(later), only=later)
        if wide:
            _relay(wide)
    return len(events) - len(later) + len(wide)


def _wide_part(events: list[JobEvent]) -> set[int]:
    """The events to relay in a transaction of their own (see ``relay_batch``)."""
    companies = {event.company_id for event in events}  # type: ignore[attr-defined]
    if len(companies) < 2:
        return set()
    wide = companies_fanning_out_wide(companies)
    if not wide or wide == companies:
        return set()
    return {event.pk for event in events if event.company_id in wide}  # type: ignore[attr-defined]


def _relay(events: list[JobEvent]) -> None:
    """Fan out, request the reports and mark the events relayed, in the caller's transaction;
    wake the sender of each lane that got deliveries once it commits."""
    if _fan_out(events):
        companies = {event.company_id for event in events}  # type: ignore[attr-defined]
        for lane in sorted({lanes.lane_of(company) for company in companies}):
            publish_on_commit(lanes.task(SENDER_TASK, lane))
    _request_reports(events)
    _mark_relayed(events)
    changes = [(e.status, e.failure_reason) for e in events if e.kind == JobEventKind.TIMELINE]
    if changes:  # counted once, when the batch commits (never for a batch rolled back)
        transaction.on_commit(partial(metrics.job_changes_observe, changes), robust=True)


def events_relay(
    *, batch_size: int = BATCH_SIZE, budget: float | None = BUDGET, lane: str = lanes.NARROW
) -> int:
    """Relay batches of ``lane`` until no event waits (or ``budget`` seconds passed); return how
    many.

    When the budget runs out with events left, a new wake-up is published so the rest is
    relayed behind the messages already queued. The narrow lane's relay, which every job change
    wakes, then wakes the wide lane's when a wide company's event waits (``webhooks.lanes``).
    """
    stop_at = None if budget is None else time.monotonic() + budget
    relayed = 0
    while True:
        count = relay_batch(batch_size=batch_size, lane=lane)
        relayed += count
        if count < batch_size:
            break
        if stop_at is not None and time.monotonic() >= stop_at:
            publish_wakeup(lanes.task(RELAY_TASK, lane))  # its own was consumed when it started
            break
    if lane == lanes.NARROW and events_waiting(older_than=timedelta(0), lane=lanes.WIDE):
        publish_on_commit(lanes.task(RELAY_TASK, lanes.WIDE))  # (no transaction: at once)
    return relayed


def events_waiting(*, older_than: timedelta = SWEEP_AFTER, lane: str | None = None) -> bool:
    """Whether an event of ``lane`` (None: any) has waited for the relay longer than
    ``older_than``."""
    cutoff = timezone.now() - older_than
    return bool(_unrelayed(lane).filter(created_at__lte=cutoff).exists())


def relay_sweep() -> bool:
    """Wake each lane's relay if an event of it waits that its wake-up should have handled;
    True if one was woken.

    Not while a wake-up is outstanding and not yet presumed lost (``publish_wakeup``): a busy
    worker will get to it, and more messages would only queue behind it.
    """
    woken = False
    for lane in lanes.LANES:
        if events_waiting(lane=lane):
            woken = publish_wakeup(lanes.task(RELAY_TASK, lane), resend_lost=True) or woken
    return woken
