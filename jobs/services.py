"""Every change to a job goes through here.

Each service takes the job's row lock, checks ``TRANSITIONS``, updates the job, appends the
next ``JobEvent`` and writes the webhook outbox, all in one transaction.
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.transactions import atomic_service
from reports.services import report_request
from webhooks.services import Event, emit, emit_many

from .errors import (
    DuplicateJobCode,
    InvalidCounts,
    InvalidFailureReason,
    InvalidTransition,
    JobFinished,
    JobNotFound,
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
    JobStatus,
    PushResult,
    PushStatus,
)
from .representation import (
    job_event_representation,
    job_representation,
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


# The webhook event each reported status fires.
EVENT_WEBHOOKS: dict[EventStatus, str] = {
    EventStatus.STARTED: "jobs.started",
    EventStatus.COMPLETED: "jobs.completed",
    EventStatus.COMPLETED_WITH_ERRORS: "jobs.completed_with_errors",
    EventStatus.FAILED: "jobs.failed",
}


def _emit(job: Job, events_id: str, **extra: Callable[[], Any]) -> None:
    """Write the job's webhook outbox rows (in the current transaction)."""

    def data() -> dict[str, Any]:
        return {**job_representation(job), **{key: make() for key, make in extra.items()}}

    emit(company_id=job.company_id, events_id=events_id, object_id=job.pk, data=data)


def _event_data(event: JobEvent) -> Callable[[], Any]:
    return lambda: job_event_representation(event)


def generate_job_code() -> str:
    return "JOB-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def lock_job(job_id: Any, *, company: Company | None = None) -> Job:
    """Return the job (its report joined) with its row locked until the transaction ends.

    With ``company``, another company's job is not found (``JobNotFound``): the API's one read.
    """
    jobs = Job.objects.select_for_update(of=("self",)).select_related("report")
    if company is not None:
        jobs = jobs.filter(company=company)
    try:
        return jobs.get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        raise JobNotFound("No such job.") from exc


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


def _touch(job: Job, now: datetime) -> None:
    job.last_activity_at = now
    job.expires_at = None if job.is_terminal else now + timedelta(seconds=job.expires_after)


def _append_event(
    *,
    job: Job,
    status: EventStatus,
    source: EventSource,
    actor: Actor,
    failure_reason: str = "",
    message: str = "",
    data: dict[str, Any] | None = None,
    sequence: int | None = None,
) -> JobEvent:
    if sequence is None:
        sequence = (job.events.aggregate(last=Max("sequence"))["last"] or 0) + 1
    return JobEvent.objects.create(
        job=job,
        sequence=sequence,
        status=status,
        failure_reason=failure_reason,
        message=message,
        data=data or {},
        source=source,
        actor=actor,
    )


@atomic_service
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
    """Create a pending job and its ``created`` event."""
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
    )
    _touch(job, now)
    for _attempt in range(1 if code else 5):
        job.code = code or generate_job_code()
        try:
            with transaction.atomic():
                job.save(force_insert=True)
            break
        except IntegrityError:
            if not Job.objects.filter(company=company, code=job.code).exists():
                raise
            if code:
                raise DuplicateJobCode(
                    f"A job with code '{code}' already exists.", field="code"
                ) from None
    else:  # pragma: no cover - five 40-bit random codes taken in a row
        raise DuplicateJobCode("Could not generate a unique job code; try again.")
    event = _append_event(  # a new job's first event: no need to look for the last one
        job=job, status=EventStatus.CREATED, source=source, actor=actor, sequence=1
    )
    _emit(job, "jobs.create", job_event=_event_data(event))
    return job


@atomic_service
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
) -> JobEvent:
    """Move a job through the state machine; ``event.job`` is the updated job.

    ``company``: only that company's job (else ``JobNotFound``).
    """
    event = EventStatus(status)
    if event not in TRANSITION_EVENTS:
        raise InvalidTransition(
            f"'{event}' is not a status an event can report; use one of: "
            + ", ".join(sorted(TRANSITION_EVENTS))
            + ".",
        )
    job = lock_job(job_id, company=company)  # first: an unknown job is 404 whatever the event
    _check_failure_reason(event=event, failure_reason=failure_reason)
    current = JobStatus(job.status)
    if current in TERMINAL_STATUSES:
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
    job.save()
    job_event = _append_event(
        job=job,
        status=event,
        failure_reason=failure_reason,
        message=message,
        data=data,
        source=source,
        actor=actor,
    )
    job_event.job = job
    _emit(job, EVENT_WEBHOOKS[event], job_event=_event_data(job_event))
    if new_status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS):
        report_request(job=job)
    return job_event


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


def job_expire(*, job_id: Any) -> JobEvent:
    """Fail the job as ``job_expired`` (the expiry task's single-job path)."""
    return job_fail(
        job_id=job_id,
        failure_reason=FailureReason.JOB_EXPIRED,
        message=EXPIRED_MESSAGE,
        source=EventSource.SYSTEM,
    )


@atomic_service
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
) -> JobEvent:
    """Record counts, message or metadata on an active job as a ``progress`` event."""
    job = lock_job(job_id, company=company)
    if job.is_terminal:
        raise JobFinished(f"Job {job.code} is already {job.status}; progress is closed.")
    data = _apply_counts(job, total_records=total_records, effected_records=effected_records)
    if message is not None:
        job.message = message
    if metadata is not None:
        job.metadata = data["metadata"] = metadata
    _touch(job, timezone.now())
    job.save()
    job_event = _append_event(
        job=job,
        status=EventStatus.PROGRESS,
        message=message or "",
        data=data,
        source=source,
        actor=actor,
    )
    job_event.job = job
    _emit(job, "jobs.update", job_event=_event_data(job_event))
    return job_event


@atomic_service
def push_result_record(
    *, job_id: Any, data: PushResultData, company: Company | None = None
) -> tuple[PushResult, bool]:
    """Store one push result; a repeated ``push_communication_id`` returns the stored one.

    Push results may arrive after the job finished (the accounting service reports
    asynchronously): they are kept, a completed job's report is rebuilt to include them, and
    only an active job's expiry clock is reset.
    """
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
    if job.is_terminal and job.status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS):
        report_request(job=job)  # a late result: the report must include it

    _emit(
        job,
        "jobs.push_results.create",
        push_result=lambda: push_result_representation(result),
    )
    return result, True


def jobs_expire_stale(*, batch_size: int = 500) -> int:
    """Fail every active job whose ``expires_at`` has passed as ``job_expired``; return how many.

    Works in batches: each locks its jobs with SKIP LOCKED (a job that is busy receiving an
    event is left to that event, which refreshes its expiry), then updates them, appends their
    ``system`` events and writes their ``jobs.failed`` outbox rows set-based, in one transaction.
    Two runs at once never expire a job twice.
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
    ids = list(
        Job.objects.select_for_update(skip_locked=True)
        .filter(status__in=list(ACTIVE_STATUSES), expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    if not ids:
        return 0
    Job.objects.filter(pk__in=ids).update(
        status=JobStatus.FAILED,
        failure_reason=FailureReason.JOB_EXPIRED,
        message=EXPIRED_MESSAGE,
        start_time=Coalesce("start_time", Value(now)),
        end_time=now,
        last_activity_at=now,
        expires_at=None,
        updated_at=now,
    )
    last_sequences = dict(
        JobEvent.objects.filter(job_id__in=ids)
        .values("job_id")
        .annotate(last=Max("sequence"))
        .values_list("job_id", "last")
    )
    events = JobEvent.objects.bulk_create(
        [
            JobEvent(
                job_id=job_id,
                sequence=last_sequences.get(job_id, 0) + 1,
                status=EventStatus.FAILED,
                failure_reason=FailureReason.JOB_EXPIRED,
                message=EXPIRED_MESSAGE,
                source=EventSource.SYSTEM,
                created_at=now,
            )
            for job_id in ids
        ]
    )
    _emit_many(ids, "jobs.failed", {e.job_id: e for e in events})
    return len(ids)


def _emit_many(job_ids: list[Any], events_id: str, job_events: dict[Any, JobEvent]) -> None:
    """The outbox rows of many jobs at once (job rows read in one query)."""
    jobs = list(Job.objects.select_related("report").filter(pk__in=job_ids))

    def data_for(job: Job) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            event = job_events[job.pk]
            return {**job_representation(job), "job_event": job_event_representation(event)}

        return make

    emit_many(
        events_id=events_id,
        events=[Event(company_id=j.company_id, object_id=j.pk, data=data_for(j)) for j in jobs],
    )


def jobs_cancel(
    *, job_ids: list[Any], actor: Actor, source: EventSource, message: str = ""
) -> tuple[int, int]:
    """Cancel many jobs, each in its own transaction; return (canceled, already finished)."""
    canceled = skipped = 0
    for job_id in job_ids:
        try:
            job_cancel(job_id=job_id, actor=actor, source=source, message=message)
            canceled += 1
        except JobFinished:
            skipped += 1
    return canceled, skipped
