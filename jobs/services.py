"""Every change to a job goes through here.

Each service takes the job's row lock, checks ``TRANSITIONS``, updates the job and appends its
``JobEvent``, in one transaction, and nothing else: the event log is the outbox. After the
commit one wake-up is published for the relay (``jobs.relay``), which turns the new events into
webhook deliveries and report builds in the worker; the relay sweep covers a lost wake-up.
"""

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.db.models import F, JSONField, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import leases
from config.outbox import publish_on_commit
from config.rows import NewWithLog, VersionedChange, Writer
from config.sql import insert_from_select
from config.transactions import atomic_service

from . import selectors
from .errors import (
    DuplicateJobCode,
    InvalidCounts,
    InvalidFailureReason,
    InvalidTransition,
    JobFinished,
    JobNotFound,
    PushResultTooLarge,
)
from .models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Company,
    EventSource,
    EventStatus,
    FailureReason,
    Job,
    JobEvent,
    JobEventKind,
    JobStatus,
    PushResult,
    PushStatus,
)
from .representation import (
    UNSET,
    job_representation,
    job_row_image,
    job_row_image_sql,
    push_result_representation,
)

# The state machine: (current job status, reported event) -> new job status.
# Pairs not listed are refused; terminal statuses have no way out.
TRANSITIONS: dict[tuple[JobStatus, EventStatus], JobStatus] = {
    (JobStatus.PENDING, EventStatus.STARTED): JobStatus.PROCESSING,
    (JobStatus.PENDING, EventStatus.COMPLETED): JobStatus.COMPLETED,
    (JobStatus.PENDING, EventStatus.COMPLETED_WITH_ERRORS): JobStatus.COMPLETED_WITH_ERRORS,
    (JobStatus.PENDING, EventStatus.FAILED): JobStatus.FAILED,
    (JobStatus.PROCESSING, EventStatus.COMPLETED): JobStatus.COMPLETED,
    (JobStatus.PROCESSING, EventStatus.COMPLETED_WITH_ERRORS): JobStatus.COMPLETED_WITH_ERRORS,
    (JobStatus.PROCESSING, EventStatus.FAILED): JobStatus.FAILED,
}
TRANSITION_EVENTS = frozenset(event for _, event in TRANSITIONS)
EXPIRED_MESSAGE = "No activity within the expiry time limit."

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U

Actor = User | None


@dataclass(frozen=True)
class PushResultData:
    """A push status report of the accounting data service (seed 001), already validated."""

    push_communication_id: str
    status: str
    connection_id: str = ""
    business_name: str = ""
    service_name: str = ""
    data_type: str = ""
    source_object_ids: list[str] = field(default_factory=list)
    requested_on: datetime | None = None
    completed_on: datetime | None = None
    response_code: int | None = None
    validation_errors: list[dict[str, str]] = field(default_factory=list)
    service_account_ref: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    ignored_fields: list[str] = field(default_factory=list)  # keys of ``data`` not read


def push_result_size(data: PushResultData) -> int:
    """The push result's size as stored (UTF-8 JSON of its fields), in bytes."""
    return len(json.dumps(asdict(data), default=str, separators=(",", ":")).encode())


RELAY_TASK = "jobs.relay_events"
CANCEL_BATCH = 500
# Jobs expired per transaction: their rows stay locked while it runs (well under a second).
EXPIRE_BATCH = 5000


def relay_on_commit() -> None:
    """Wake the relay once the current transaction commits (once per transaction)."""
    publish_on_commit(RELAY_TASK)


def generate_job_code() -> str:
    return "JOB-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def lock_job(job_id: Any, *, company: Company | None = None) -> Job:
    """Return the job (its report joined) with its row locked until the transaction ends.

    With ``company``, another company's job is not found (``JobNotFound``): the API's one read.
    """
    return _read_job(job_id, company=company, lock=True)


def _read_job(job_id: Any, *, company: Company | None, lock: bool) -> Job:
    try:
        job = selectors.job_with_report(company=company, field="id", value=job_id, lock=lock)
    except (ValueError, TypeError, DjangoValidationError) as exc:
        raise JobNotFound("No such job.") from exc
    if job is None:
        raise JobNotFound("No such job.")
    return job


def _check_counts(*, total_records: int | None, effected_records: int | None) -> None:
    if total_records is not None and total_records < 0:
        raise InvalidCounts("total_records must be 0 or more.", field="total_records")
    if effected_records is not None and effected_records < 0:
        raise InvalidCounts("effected_records must be 0 or more.", field="effected_records")
    if (
        total_records is not None
        and effected_records is not None
        and effected_records > total_records
    ):
        raise InvalidCounts(
            f"effected_records ({effected_records}) cannot exceed total_records ({total_records}).",
            field="effected_records",
        )


def _check_failure_reason(*, event: EventStatus, failure_reason: str) -> None:
    if event == EventStatus.FAILED:
        if not failure_reason:
            raise InvalidFailureReason(
                "failure_reason is required when the status is failed.", field="failure_reason"
            )
        if failure_reason not in FailureReason.values:
            raise InvalidFailureReason(
                f"'{failure_reason}' is not a failure reason; use one of: "
                + ", ".join(FailureReason.values)
                + ".",
                field="failure_reason",
            )
    elif failure_reason:
        raise InvalidFailureReason(
            "failure_reason is only allowed when the status is failed.", field="failure_reason"
        )


def _apply_counts(
    job: Job, *, total_records: int | None, effected_records: int | None
) -> dict[str, Any]:
    """Check the counts against the stored ones, set them; return what changed (for the event)."""
    _check_counts(
        total_records=job.total_records if total_records is None else total_records,
        effected_records=job.effected_records if effected_records is None else effected_records,
    )
    changed: dict[str, Any] = {}
    if total_records is not None:
        job.total_records = changed["total_records"] = total_records
    if effected_records is not None:
        job.effected_records = changed["effected_records"] = effected_records
    return changed


# What a lifecycle event or a progress report may change on the job row: the UPDATE writes
# these columns only (``updated_at`` is set by ``auto_now``).
JOB_CHANGE_FIELDS = (
    "status",
    "failure_reason",
    "message",
    "metadata",
    "total_records",
    "effected_records",
    "start_time",
    "end_time",
    "last_activity_at",
    "expires_at",
    "last_sequence",
    "updated_at",
)


# A job change is one UPDATE of the job and one INSERT of its event: fixed statements, built
# once (``config.rows.Writer``), not compiled by the ORM on every request.
JOB_WRITER = Writer(Job)
EVENT_WRITER = Writer(JobEvent)


def _next_sequence(job: Job) -> None:
    """Number the job's next timeline event on its (locked) row: saved with the job change."""
    job.last_sequence += 1


def _touch(job: Job, now: datetime) -> None:
    job.last_activity_at = now
    job.expires_at = None if job.is_terminal else now + timedelta(seconds=job.expires_after)


def _new_event(
    *,
    job: Job,
    status: EventStatus,
    source: EventSource,
    actor: Actor,
    failure_reason: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    report: Any = UNSET,
) -> JobEvent:
    """The (unsaved) timeline event numbered ``job.last_sequence`` (``_next_sequence``), with
    the job's snapshot. ``job`` is read with its report joined, so the snapshot costs no
    query."""
    return JobEvent(
        job=job,
        sequence=job.last_sequence,
        status=status,
        failure_reason=failure_reason,
        message=message,
        data=data or {},
        source=source,
        actor=actor,
        snapshot=job_representation(job, report=report),
    )


def _append_event(*, job: Job, **event: Any) -> JobEvent:
    """Log the timeline event numbered ``job.last_sequence`` (the job already saved with it)."""
    job_event = _new_event(job=job, **event)
    EVENT_WRITER.insert(job_event)
    relay_on_commit()
    return job_event


# A job change (UPDATE of the job, only while its last_sequence is the one read, and INSERT of
# its event) as one statement: see ``_job_change``.
# The push counts are checked too: a push result changes them (and the job's stamps) without a
# timeline event, and the change's snapshot must not miss it.
JOB_VERSIONS = ("last_sequence", "push_success_count", "push_failed_count")
JOB_CHANGE = VersionedChange(JOB_WRITER, JOB_CHANGE_FIELDS, JOB_VERSIONS, EVENT_WRITER)
# A new job (unless its code is taken in its company) and its ``created`` event, one statement.
NEW_JOB = NewWithLog(JOB_WRITER, EVENT_WRITER, unless_taken=("company", "code"))
# How many times an optimistic change reads and tries again before it takes the row lock.
OPTIMISTIC_TRIES = 3


def _job_change(
    *,
    job_id: Any,
    company: Company | None,
    change: Callable[[Job], dict[str, Any]],
    read_with: Any = None,
) -> JobEvent:
    """Apply ``change`` to the job: it checks the job as read (raising a domain error),
    changes it in memory (``_touch``, ``_next_sequence``) and returns its event's fields
    (``_new_event``), which is logged with the job's snapshot as it was written.

    On PostgreSQL outside a transaction the change is optimistic: the job is read without a
    lock and the job's UPDATE and its event's INSERT are one statement that applies only if
    the job's ``last_sequence`` and push counts are still those read (``JOB_CHANGE``); if
    another writer came first, the job is read again and ``change`` decides again on what it
    left (a finished job refuses, as it would have under the lock). Three round trips in all,
    authentication included (two with ``read_with``), instead of six, and no lock held
    between them. Elsewhere (SQLite, inside a transaction, or after ``OPTIMISTIC_TRIES`` lost
    races) the job row is locked first (``_job_change_locked``). Either way the job and its
    event commit together.

    ``read_with``: the API user whose authentication read this job in the same statement
    (``selectors.api_user_get``): the first try uses that read (two statements in all).
    """
    if _one_statement():
        for _try in range(OPTIMISTIC_TRIES):
            job = _job_read_once(job_id, company=company, read_with=read_with)
            read = [getattr(job, name) for name in JOB_VERSIONS]
            job_event = JOB_CHANGE.write(job, read, _event_of(job, change(job)))
            if job_event is not None:
                relay_on_commit()  # no transaction: the wake-up goes at once
                job_event.job = job
                return job_event
    return _job_change_locked(job_id=job_id, company=company, change=change)


def _event_of(job: Job, fields: dict[str, Any]) -> Callable[[], JobEvent]:
    """The event ``change`` described, built when asked (after the job's values are prepared,
    so its snapshot holds the job's ``auto_now`` stamps as written)."""
    return lambda: _new_event(job=job, **fields)


def _job_read_once(job_id: Any, *, company: Company | None, read_with: Any) -> Job:
    """The job as the authentication read it (once: a retry reads again), or read now."""
    found, job = selectors.job_read_with(read_with, "id", job_id, company=company, take=True)
    if not found:
        return _read_job(job_id, company=company, lock=False)
    if job is None:
        raise JobNotFound("No such job.")
    return job


def _one_statement() -> bool:
    """Whether a write and its event go as one statement (``config.rows._WithLog``):
    PostgreSQL, outside a transaction (inside one, it joins it the usual way)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


@atomic_service
def _job_change_locked(
    *, job_id: Any, company: Company | None, change: Callable[[Job], dict[str, Any]]
) -> JobEvent:
    job = lock_job(job_id, company=company)
    fields = change(job)
    JOB_WRITER.update(job, JOB_CHANGE_FIELDS)
    job_event = _append_event(job=job, **fields)
    job_event.job = job
    return job_event


def job_create(
    *,
    company: Company,
    type: str,
    code: str | None = None,
    total_records: int | None = None,
    expires_after: int | None = None,
    metadata: dict[str, Any] | None = None,
    source: EventSource = EventSource.API,
    actor: Actor = None,
) -> Job:
    """Create a pending job and its ``created`` event.

    On PostgreSQL outside a transaction the job's INSERT (skipped if its code is taken) and its
    event's INSERT are one statement (``NEW_JOB``); elsewhere they run in a transaction.
    """
    _check_counts(total_records=total_records, effected_records=None)
    if expires_after is None:
        expires_after = settings.JOBTRAIL_JOB_EXPIRES_AFTER
    if expires_after < 1:
        raise InvalidCounts("expires_after must be at least 1 second.", field="expires_after")
    now = timezone.now()
    job = Job(
        company=company,
        type=type,
        total_records=total_records,
        expires_after=expires_after,
        metadata=metadata or {},
        last_activity_at=now,
        last_sequence=1,  # its ``created`` event
    )
    _touch(job, now)

    def created() -> JobEvent:  # a new job's first event, and no report: nothing to look up
        return _new_event(
            job=job, status=EventStatus.CREATED, source=source, actor=actor, report=None
        )

    if _one_statement():
        _insert_with_free_code(job, code, lambda: NEW_JOB.write(job, created) is not None)
        relay_on_commit()  # no transaction: the wake-up goes at once
        return job
    return _job_create_in_transaction(job, code=code, created=created)


def _insert_with_free_code(job: Job, code: str | None, insert: Callable[[], bool]) -> None:
    """Insert the job (``insert``: False when its code is taken in its company) with ``code``,
    or with a generated code, drawn again while taken."""
    for _attempt in range(1 if code else 5):
        job.code = code or generate_job_code()
        if insert():
            return
        if code:
            raise DuplicateJobCode(f"A job with code '{code}' already exists.", field="code")
    raise DuplicateJobCode(  # pragma: no cover - five 40-bit random codes taken in a row
        "Could not generate a unique job code; try again."
    )


@atomic_service
def _job_create_in_transaction(
    job: Job, *, code: str | None, created: Callable[[], JobEvent]
) -> Job:
    _insert_with_free_code(
        job, code, lambda: JOB_WRITER.insert(job, unless_taken=("company", "code"))
    )
    EVENT_WRITER.insert(created())
    relay_on_commit()
    return job


def job_apply_event(
    *,
    job_id: Any,
    status: EventStatus | str,
    failure_reason: str = "",
    message: str = "",
    total_records: int | None = None,
    effected_records: int | None = None,
    source: EventSource = EventSource.API,
    actor: Actor = None,
    company: Company | None = None,
    read_with: Any = None,
) -> JobEvent:
    """Move a job through the state machine; ``event.job`` is the updated job.

    ``company``: only that company's job (else ``JobNotFound``); ``read_with``: see
    ``_job_change``.
    """
    event = EventStatus(status)
    if event not in TRANSITION_EVENTS:
        raise InvalidTransition(
            f"'{event}' is not a status an event can report; use one of: "
            + ", ".join(sorted(TRANSITION_EVENTS))
            + ".",
        )

    def change(job: Job) -> dict[str, Any]:
        _check_failure_reason(event=event, failure_reason=failure_reason)
        current = JobStatus(job.status)
        if current in TERMINAL_STATUSES:
            if failure_reason == FailureReason.CANCELED_BY_USER:
                raise JobFinished(
                    f"Job {job.code} is already finished ({current}); it cannot be cancelled."
                )
            raise JobFinished(f"Job {job.code} is already {current}; it cannot become {event}.")
        new_status = TRANSITIONS.get((current, event))
        if new_status is None:
            raise InvalidTransition(f"Job {job.code} is {current}; it cannot become {event}.")
        data = _apply_counts(job, total_records=total_records, effected_records=effected_records)
        now = timezone.now()
        job.status = new_status
        job.failure_reason = failure_reason
        if message:
            job.message = message
        if job.start_time is None:
            job.start_time = now
        if new_status in TERMINAL_STATUSES:
            job.end_time = now
        _touch(job, now)
        _next_sequence(job)
        return {
            "status": event,
            "failure_reason": failure_reason,
            "message": message,
            "data": data,
            "source": source,
            "actor": actor,
        }

    # first: an unknown job is 404 whatever the event
    return _job_change(job_id=job_id, company=company, change=change, read_with=read_with)


def job_start(*, job_id: Any, message: str = "", **kwargs: Any) -> JobEvent:
    return job_apply_event(job_id=job_id, status=EventStatus.STARTED, message=message, **kwargs)


def job_complete(*, job_id: Any, message: str = "", **kwargs: Any) -> JobEvent:
    return job_apply_event(job_id=job_id, status=EventStatus.COMPLETED, message=message, **kwargs)


def job_complete_with_errors(*, job_id: Any, message: str = "", **kwargs: Any) -> JobEvent:
    return job_apply_event(
        job_id=job_id, status=EventStatus.COMPLETED_WITH_ERRORS, message=message, **kwargs
    )


def job_fail(*, job_id: Any, failure_reason: str, message: str = "", **kwargs: Any) -> JobEvent:
    return job_apply_event(
        job_id=job_id,
        status=EventStatus.FAILED,
        failure_reason=failure_reason,
        message=message,
        **kwargs,
    )


def job_cancel(
    *,
    job_id: Any,
    actor: Actor,
    source: EventSource = EventSource.API,
    message: str = "",
    company: Company | None = None,
) -> JobEvent:
    """Fail the job as ``canceled_by_user``; refused with ``JobFinished`` once it is terminal."""
    return job_fail(
        job_id=job_id,
        failure_reason=FailureReason.CANCELED_BY_USER,
        message=message or f"Canceled by {actor or 'a user'}.",
        source=source,
        actor=actor,
        company=company,
    )


@atomic_service
def job_fail_if_pending(*, job_id: Any, failure_reason: str, message: str) -> JobEvent | None:
    """Fail the job as a ``system`` event if it is still ``pending``; else leave it (None).

    What a final failure of the job's hand-off to the integration does (``jobs.handoff``): a
    job the integration started, or that finished meanwhile, is its own business by then.
    """
    try:
        job = lock_job(job_id)
    except JobNotFound:
        return None
    if job.status != JobStatus.PENDING:
        return None
    return job_fail(
        job_id=job.pk,
        failure_reason=failure_reason,
        message=message,
        source=EventSource.SYSTEM,
    )


def job_expire(*, job_id: Any) -> JobEvent:
    """Fail the job as ``job_expired`` (the expiry task's single-job path)."""
    return job_fail(
        job_id=job_id,
        failure_reason=FailureReason.JOB_EXPIRED,
        message=EXPIRED_MESSAGE,
        source=EventSource.SYSTEM,
    )


def job_record_progress(
    *,
    job_id: Any,
    total_records: int | None = None,
    effected_records: int | None = None,
    message: str | None = None,
    metadata: dict[str, Any] | None = None,
    source: EventSource = EventSource.API,
    actor: Actor = None,
    company: Company | None = None,
    read_with: Any = None,
) -> JobEvent:
    """Record counts, message or metadata on an active job as a ``progress`` event
    (``read_with``: see ``_job_change``)."""

    def change(job: Job) -> dict[str, Any]:
        if job.is_terminal:
            raise JobFinished(f"Job {job.code} is already {job.status}; progress is closed.")
        data = _apply_counts(job, total_records=total_records, effected_records=effected_records)
        if message is not None:
            job.message = message
        if metadata is not None:
            job.metadata = data["metadata"] = metadata
        _touch(job, timezone.now())
        _next_sequence(job)
        return {
            "status": EventStatus.PROGRESS,
            "message": message or "",
            "data": data,
            "source": source,
            "actor": actor,
        }

    return _job_change(job_id=job_id, company=company, change=change, read_with=read_with)


def push_result_check_size(data: PushResultData) -> None:
    """``PushResultTooLarge`` for a push larger than a job keeps (checked before it is stored
    anywhere, attached or waiting unmatched: one kept unmatched could never be attached)."""
    size = push_result_size(data)
    if size > settings.JOBTRAIL_MAX_PUSH_RESULT_BYTES:
        raise PushResultTooLarge(
            f"This push result is {size} bytes as JSON; at most "
            f"{settings.JOBTRAIL_MAX_PUSH_RESULT_BYTES} are kept (JOBTRAIL_MAX_PUSH_RESULT_BYTES)."
        )


@atomic_service
def push_result_record(
    *, job_id: Any, data: PushResultData, company: Company | None = None
) -> tuple[PushResult, bool]:
    """Store one push result; a repeated ``push_communication_id`` returns the stored one.

    Push results may arrive after the job finished (the accounting service reports
    asynchronously): they are kept, a completed job's report is rebuilt to include them (the
    relay requests it), and only an active job's expiry clock is reset. The result is logged as
    an unnumbered ``push_result`` event (not on the timeline) for the relay.
    """
    push_result_check_size(data)
    job = lock_job(job_id, company=company)
    existing = job.push_results.filter(push_communication_id=data.push_communication_id).first()
    if existing is not None:
        return existing, False  # counted when it was first recorded
    result = PushResult.objects.create(
        job=job,
        push_communication_id=data.push_communication_id,
        connection_id=data.connection_id,
        business_name=data.business_name,
        service_name=data.service_name,
        data_type=data.data_type,
        source_object_ids=data.source_object_ids,
        requested_on=data.requested_on,
        completed_on=data.completed_on,
        status=data.status,
        response_code=data.response_code,
        validation_errors=data.validation_errors,
        service_account_ref=data.service_account_ref,
        request_id=data.request_id,
        ignored_fields=data.ignored_fields,
    )
    counter = "push_success_count" if data.status == PushStatus.SUCCESS else "push_failed_count"
    changes: dict[str, Any] = {counter: F(counter) + 1}
    setattr(job, counter, getattr(job, counter) + 1)  # exact: the row is locked
    if not job.is_terminal:
        now = timezone.now()
        _touch(job, now)
        job.updated_at = now
        changes.update(last_activity_at=now, expires_at=job.expires_at, updated_at=now)
    Job.objects.filter(pk=job.pk).update(**changes)
    # a late result of a completed job: the relay requests the report again (snapshot status)
    JobEvent.objects.create(
        job=job,
        kind=JobEventKind.PUSH_RESULT,
        data=push_result_representation(result),
        source=EventSource.API,
        snapshot=job_representation(job),
    )
    relay_on_commit()
    return result, True


def jobs_expire_stale(*, batch_size: int = EXPIRE_BATCH) -> int:
    """Fail every active job whose ``expires_at`` has passed as ``job_expired``; return how many.

    Works in batches: each locks its jobs with SKIP LOCKED (a job locked by a change in a
    transaction is left to that change, which refreshes its expiry), then updates them and
    appends their ``system`` events set-based, in one transaction; the relay fans the events
    out. Two runs at once never expire a job twice. An optimistic change (``_job_change``)
    holds no lock: if the expiry commits between its read and its write, it reads the job
    again and finds it failed (409 ``job_finished``), as if it had come a moment later.
    """
    expired = 0
    while True:
        count = _expire_batch(batch_size=batch_size)
        expired += count
        if count < batch_size:
            return expired


@transaction.atomic
def _expire_batch(*, batch_size: int) -> int:
    now = timezone.now()
    if connection.vendor == "postgresql":
        count = _expire_batch_postgresql(batch_size=batch_size, now=now)
        if count:
            relay_on_commit()
        return count
    ids = list(
        leases.locked(
            Job.objects.filter(status__in=list(ACTIVE_STATUSES), expires_at__lte=now),
            limit=batch_size,
            order_by=("expires_at",),
        ).values_list("pk", flat=True)
    )
    _fail_locked(
        ids,
        failure_reason=FailureReason.JOB_EXPIRED,
        message=EXPIRED_MESSAGE,
        source=EventSource.SYSTEM,
        actor=None,
        now=now,
    )
    return len(ids)


def _expire_batch_postgresql(*, batch_size: int, now: datetime) -> int:
    """``_fail_locked`` for a batch of stale jobs in ONE statement (PostgreSQL).

    Locks the oldest stale jobs (``SKIP LOCKED``), fails them (``UPDATE ... RETURNING``) and
    logs their events from the returned rows (``INSERT ... SELECT``, the snapshot a row image of
    the failed job): the rows are read once and never leave the database.
    """
    job, event = Job._meta.db_table, JobEvent._meta.db_table
    active = sorted(ACTIVE_STATUSES)
    active_list = ", ".join(f"%(active{i})s" for i in range(len(active)))
    statement = f"""
        WITH failed AS (
            UPDATE {job} SET status = %(failed)s, failure_reason = %(reason)s,
                message = %(message)s, start_time = COALESCE(start_time, %(now)s),
                end_time = %(now)s, last_activity_at = %(now)s, expires_at = NULL,
                last_sequence = last_sequence + 1, updated_at = %(now)s
            WHERE id = ANY(ARRAY(
                SELECT id FROM {job}
                WHERE status IN ({active_list})
                    AND expires_at <= %(now)s
                ORDER BY expires_at LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ))
            RETURNING {job}.*
        )
        INSERT INTO {event} (job_id, kind, sequence, status, failure_reason, message, data,
            source, created_at, snapshot)
        SELECT f.id, %(kind)s, f.last_sequence,
            %(failed)s, %(reason)s, %(message)s, '{{}}'::jsonb, %(source)s, %(now)s,
            {job_row_image_sql("f")}
        FROM failed f
    """
    params: dict[str, Any] = {
        "failed": JobStatus.FAILED.value,
        "reason": FailureReason.JOB_EXPIRED.value,
        "message": EXPIRED_MESSAGE,
        "now": now,
        "limit": batch_size,
        "kind": JobEventKind.TIMELINE.value,
        "source": EventSource.SYSTEM.value,
        **{f"active{i}": str(status) for i, status in enumerate(active)},
    }
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def _fail_locked(
    ids: list[Any],
    *,
    failure_reason: FailureReason,
    message: str,
    source: EventSource,
    actor: Actor,
    now: datetime,
) -> None:
    """Fail the active jobs ``ids`` (rows locked by the caller) and log their events.

    Two statements whatever the number of jobs, and no job read into Python: one ``UPDATE``
    (which also numbers each job's next event: ``last_sequence + 1``), then one
    ``INSERT ... SELECT`` of their ``failed`` events, numbered from the updated rows, with a
    row image of the failed job as its snapshot (``job_row_image``, rendered by the relay).
    """
    if not ids:
        return
    jobs = Job.objects.filter(pk__in=ids)
    jobs.update(
        status=JobStatus.FAILED,
        failure_reason=failure_reason,
        message=message,
        start_time=Coalesce("start_time", Value(now)),
        end_time=now,
        last_activity_at=now,
        expires_at=None,
        last_sequence=F("last_sequence") + 1,
        updated_at=now,
    )
    columns: dict[str, Any] = {
        "job": F("pk"),
        "kind": Value(JobEventKind.TIMELINE.value),
        "sequence": F("last_sequence"),
        "status": Value(EventStatus.FAILED.value),
        "failure_reason": Value(str(failure_reason)),
        "message": Value(message),
        "data": Value({}, output_field=JSONField()),
        "source": Value(str(source)),
        "created_at": Value(now),
        "snapshot": job_row_image(),
    }
    if actor is not None:
        columns["actor"] = Value(actor.pk)
    insert_from_select(JobEvent, columns, jobs.order_by("pk"))
    relay_on_commit()


def jobs_cancel(
    *, job_ids: list[Any], actor: Actor, source: EventSource, message: str = ""
) -> tuple[list[Any], int]:
    """Cancel many jobs set-based, in batches; return (the ids canceled, how many were already
    finished).

    Each batch locks its jobs (in pk order: no deadlock with another batch), fails the active
    ones as ``canceled_by_user`` and logs their events in one transaction. Unknown ids count
    as neither. The ids are those this call canceled: a job another cancel or event finished
    first is counted as finished, not as canceled by both (the console logs exactly these).
    """
    canceled: list[Any] = []
    skipped = 0
    ids = list(dict.fromkeys(job_ids))
    for start in range(0, len(ids), CANCEL_BATCH):
        done, finished = _cancel_batch(
            ids[start : start + CANCEL_BATCH],
            actor=actor,
            source=source,
            message=message or f"Canceled by {actor or 'a user'}.",
        )
        canceled += done
        skipped += finished
    return canceled, skipped


@transaction.atomic
def _cancel_batch(
    ids: list[Any], *, actor: Actor, source: EventSource, message: str
) -> tuple[list[Any], int]:
    locked = list(
        Job.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "status")
    )
    active = [pk for pk, status in locked if status in ACTIVE_STATUSES]
    _fail_locked(
        active,
        failure_reason=FailureReason.CANCELED_BY_USER,
        message=message,
        source=source,
        actor=actor,
        now=timezone.now(),
    )
    return active, len(locked) - len(active)
