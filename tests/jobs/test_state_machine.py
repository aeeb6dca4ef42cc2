"""The job state machine: every allowed and forbidden move, reasons, sequences, time fields."""

import itertools
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from jobs import services
from jobs.errors import InvalidCounts, InvalidFailureReason, InvalidTransition, JobFinished
from jobs.models import (
    TERMINAL_STATUSES,
    EventSource,
    EventStatus,
    FailureReason,
    Job,
    JobEvent,
    JobStatus,
)
from tests.factories import JobFactory, job_in_status

pytestmark = pytest.mark.django_db

REPORTABLE = [
    EventStatus.STARTED,
    EventStatus.COMPLETED,
    EventStatus.COMPLETED_WITH_ERRORS,
    EventStatus.FAILED,
]
EXPECTED_ALLOWED = {
    (JobStatus.PENDING, EventStatus.STARTED): JobStatus.PROCESSING,
    (JobStatus.PENDING, EventStatus.COMPLETED): JobStatus.COMPLETED,
    (JobStatus.PENDING, EventStatus.COMPLETED_WITH_ERRORS): JobStatus.COMPLETED_WITH_ERRORS,
    (JobStatus.PENDING, EventStatus.FAILED): JobStatus.FAILED,
    (JobStatus.PROCESSING, EventStatus.COMPLETED): JobStatus.COMPLETED,
    (JobStatus.PROCESSING, EventStatus.COMPLETED_WITH_ERRORS): JobStatus.COMPLETED_WITH_ERRORS,
    (JobStatus.PROCESSING, EventStatus.FAILED): JobStatus.FAILED,
}
ALL_PAIRS = list(itertools.product(JobStatus, REPORTABLE))
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in EXPECTED_ALLOWED]


def _reason(event: EventStatus) -> str:
    return FailureReason.SERVICE_TIMEOUT if event == EventStatus.FAILED else ""


def test_transition_table_is_the_documented_one() -> None:
    assert services.TRANSITIONS == EXPECTED_ALLOWED


@pytest.mark.parametrize(("start", "event"), list(EXPECTED_ALLOWED))
def test_allowed_transition(start: JobStatus, event: EventStatus) -> None:
    job = job_in_status(start)
    events_before = job.events.count()

    result = services.job_apply_event(
        job_id=job.pk, status=event, failure_reason=_reason(event), message="moved"
    )

    job.refresh_from_db()
    assert job.status == EXPECTED_ALLOWED[(start, event)]
    assert job.failure_reason == _reason(event)
    assert job.message == "moved"
    assert result.status == event
    assert result.sequence == events_before + 1
    assert job.events.count() == events_before + 1


@pytest.mark.parametrize(("start", "event"), FORBIDDEN)
def test_forbidden_transition_changes_nothing(start: JobStatus, event: EventStatus) -> None:
    job = job_in_status(start)
    before = Job.objects.values().get(pk=job.pk)
    events_before = list(job.events.values_list("sequence", "status"))
    expected_error = JobFinished if start in TERMINAL_STATUSES else InvalidTransition

    with pytest.raises(expected_error) as excinfo:
        services.job_apply_event(job_id=job.pk, status=event, failure_reason=_reason(event))

    assert excinfo.value.status == 409
    assert Job.objects.values().get(pk=job.pk) == before
    assert list(job.events.values_list("sequence", "status")) == events_before


@pytest.mark.parametrize("status", [EventStatus.CREATED, EventStatus.PROGRESS])
def test_non_reportable_statuses_are_refused(status: EventStatus) -> None:
    job = JobFactory()
    with pytest.raises(InvalidTransition):
        services.job_apply_event(job_id=job.pk, status=status)
    assert job.events.count() == 1


def test_unknown_status_is_refused() -> None:
    job = JobFactory()
    with pytest.raises(ValueError):
        services.job_apply_event(job_id=job.pk, status="exploded")
    assert job.events.count() == 1


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_terminal_states_absorb_progress_and_cancel(terminal: JobStatus) -> None:
    job = job_in_status(terminal)
    before = Job.objects.values().get(pk=job.pk)
    with pytest.raises(JobFinished):
        services.job_record_progress(job_id=job.pk, effected_records=1)
    with pytest.raises(JobFinished):
        services.job_cancel(job_id=job.pk, actor=None)
    with pytest.raises(JobFinished):
        services.job_expire(job_id=job.pk)
    assert Job.objects.values().get(pk=job.pk) == before


# --- failure reasons ------------------------------------------------------------------------


def test_failed_requires_a_reason() -> None:
    job = JobFactory()
    with pytest.raises(InvalidFailureReason, match="required"):
        services.job_apply_event(job_id=job.pk, status=EventStatus.FAILED)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


@pytest.mark.parametrize("event", [e for e in REPORTABLE if e != EventStatus.FAILED])
def test_reason_refused_for_other_statuses(event: EventStatus) -> None:
    job = JobFactory()
    with pytest.raises(InvalidFailureReason, match="only allowed"):
        services.job_apply_event(job_id=job.pk, status=event, failure_reason="service_timeout")
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


@pytest.mark.parametrize("reason", ["timeout", "SERVICE_TIMEOUT", "canceled", " job_expired"])
def test_unknown_reason_refused(reason: str) -> None:
    job = JobFactory()
    with pytest.raises(InvalidFailureReason, match="not a failure reason"):
        services.job_fail(job_id=job.pk, failure_reason=reason)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_there_are_exactly_fifteen_reasons() -> None:
    assert len(FailureReason.values) == 15


@pytest.mark.parametrize("reason", FailureReason.values)
def test_each_of_the_fifteen_reasons_is_accepted(reason: str) -> None:
    job = JobFactory()
    event = services.job_fail(job_id=job.pk, failure_reason=reason)
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, reason)
    assert event.failure_reason == reason


def test_cancel_and_expire_record_their_reasons_and_sources(django_user_model) -> None:
    staff = django_user_model.objects.create(username="staffer")
    canceled = JobFactory()
    expired = JobFactory()

    services.job_cancel(job_id=canceled.pk, actor=staff, source=EventSource.ADMIN)
    services.job_expire(job_id=expired.pk)

    cancel_event = canceled.events.last()
    assert cancel_event is not None
    assert (cancel_event.failure_reason, cancel_event.source, cancel_event.actor) == (
        FailureReason.CANCELED_BY_USER,
        EventSource.ADMIN,
        staff,
    )
    expire_event = expired.events.last()
    assert expire_event is not None
    assert (expire_event.failure_reason, expire_event.source, expire_event.actor) == (
        FailureReason.JOB_EXPIRED,
        EventSource.SYSTEM,
        None,
    )


# --- sequences, counts and time fields ------------------------------------------------------


def test_sequence_numbers_are_contiguous_from_one() -> None:
    job = JobFactory()
    services.job_start(job_id=job.pk)
    for n in range(3):
        services.job_record_progress(job_id=job.pk, effected_records=n)
    services.job_complete(job_id=job.pk)

    rows = list(job.events.order_by("sequence").values_list("sequence", "status"))
    assert rows == [
        (1, "created"),
        (2, "started"),
        (3, "progress"),
        (4, "progress"),
        (5, "progress"),
        (6, "completed"),
    ]


def test_sequences_are_per_job() -> None:
    first, second = JobFactory(), JobFactory()
    services.job_start(job_id=first.pk)
    services.job_start(job_id=second.pk)
    assert list(second.events.values_list("sequence", flat=True)) == [1, 2]


def test_time_fields_follow_the_lifecycle() -> None:
    job = JobFactory(expires_after=600)
    assert job.start_time is None and job.end_time is None
    assert job.expires_at == job.last_activity_at + timedelta(seconds=600)
    created_activity = job.last_activity_at

    services.job_start(job_id=job.pk)
    job.refresh_from_db()
    started = job.start_time
    assert started is not None and job.end_time is None
    assert job.last_activity_at >= created_activity

    services.job_record_progress(job_id=job.pk, total_records=5, effected_records=2)
    job.refresh_from_db()
    assert job.start_time == started
    progress_activity = job.last_activity_at
    assert job.expires_at == progress_activity + timedelta(seconds=600)

    services.job_complete(job_id=job.pk)
    job.refresh_from_db()
    assert job.start_time == started
    assert job.end_time is not None and job.end_time >= started
    assert job.last_activity_at == job.end_time
    assert job.expires_at is None


@pytest.mark.parametrize("event", [e for e in REPORTABLE if e != EventStatus.STARTED])
def test_implicit_start_sets_start_and_end_time(event: EventStatus) -> None:
    job = JobFactory()
    services.job_apply_event(job_id=job.pk, status=event, failure_reason=_reason(event))
    job.refresh_from_db()
    assert job.start_time is not None
    assert job.end_time == job.start_time


def test_push_results_count_as_activity() -> None:
    job = job_in_status(JobStatus.PROCESSING)
    Job.objects.filter(pk=job.pk).update(last_activity_at=timezone.now() - timedelta(hours=1))
    stale = Job.objects.get(pk=job.pk).last_activity_at

    services.push_result_record(
        job_id=job.pk, data=services.PushResultData(push_communication_id="p1", status="success")
    )
    job.refresh_from_db()
    assert job.last_activity_at > stale
    assert job.expires_at == job.last_activity_at + timedelta(seconds=job.expires_after)


def test_push_result_is_idempotent_per_job() -> None:
    job, other = JobFactory(), JobFactory()
    data = services.PushResultData(
        push_communication_id="60473b57f0cdd1683ca71f60", status="failed"
    )
    first, created = services.push_result_record(job_id=job.pk, data=data)
    again, created_again = services.push_result_record(job_id=job.pk, data=data)
    elsewhere, created_elsewhere = services.push_result_record(job_id=other.pk, data=data)
    assert (created, created_again, created_elsewhere) == (True, False, True)
    assert again.pk == first.pk != elsewhere.pk


@pytest.mark.parametrize(
    ("total", "effected", "field"),
    [(5, 6, "effected_records"), (-1, None, "total_records"), (None, -2, "effected_records")],
)
def test_invalid_counts_are_refused(total: int | None, effected: int | None, field: str) -> None:
    job = JobFactory()
    with pytest.raises(InvalidCounts) as excinfo:
        services.job_record_progress(job_id=job.pk, total_records=total, effected_records=effected)
    assert excinfo.value.field == field
    assert job.events.count() == 1


def test_counts_are_checked_against_stored_values() -> None:
    job = JobFactory(total_records=10)
    services.job_record_progress(job_id=job.pk, effected_records=8)
    with pytest.raises(InvalidCounts):
        services.job_record_progress(job_id=job.pk, total_records=7)
    with pytest.raises(InvalidCounts):
        services.job_complete(job_id=job.pk, effected_records=11)
    job.refresh_from_db()
    assert (job.total_records, job.effected_records, job.status) == (10, 8, JobStatus.PENDING)


def test_job_codes_are_generated_and_unique_per_company() -> None:
    job = JobFactory()
    assert job.code.startswith("JOB-") and len(job.code) == 12
    same = JobFactory(code="EXPORT-1")
    other_company = JobFactory(code="EXPORT-1")
    assert same.company_id != other_company.company_id
    from jobs.errors import DuplicateJobCode

    with pytest.raises(DuplicateJobCode):
        JobFactory(code="EXPORT-1", company=same.company)
    assert Job.objects.filter(code="EXPORT-1").count() == 2


def test_expires_after_minimum_is_one_second() -> None:
    with pytest.raises(InvalidCounts):
        JobFactory(expires_after=0)
    assert JobFactory(expires_after=1).expires_after == 1


# --- atomicity ------------------------------------------------------------------------------


def test_job_row_unchanged_when_writing_the_event_fails() -> None:
    """The event's INSERT fails in the database (its sequence is taken: a unique violation)
    after the job's UPDATE ran: the transaction rolls back whole."""
    job = job_in_status(JobStatus.PROCESSING)
    JobEvent.objects.create(  # squats the number the next event takes
        job=job, sequence=job.last_sequence + 1, status=EventStatus.PROGRESS, source="api"
    )
    before = Job.objects.values().get(pk=job.pk)

    with pytest.raises(DatabaseError):
        services.job_complete(job_id=job.pk, effected_records=0, message="done")

    assert Job.objects.values().get(pk=job.pk) == before
    assert not job.events.filter(status=EventStatus.COMPLETED).exists()


def test_a_generated_code_already_taken_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The INSERT skips a taken code (ON CONFLICT DO NOTHING) and the next draw is used: no
    error, no savepoint, the transaction intact."""
    taken = JobFactory(code="JOB-TAKEN001")
    draws = iter(["JOB-TAKEN001", "JOB-FRESH002"])
    monkeypatch.setattr(services, "generate_job_code", lambda: next(draws))

    job = services.job_create(company=taken.company, type="export")

    assert job.code == "JOB-FRESH002"
    assert Job.objects.filter(company=taken.company).count() == 2
    assert list(job.events.values_list("sequence", flat=True)) == [1]


def test_a_taken_code_given_by_the_client_is_refused_and_nothing_is_written() -> None:
    from jobs.errors import DuplicateJobCode

    taken = JobFactory(code="EXPORT-9")

    with pytest.raises(DuplicateJobCode, match="already exists"):
        services.job_create(company=taken.company, type="export", code="EXPORT-9")

    assert Job.objects.filter(company=taken.company).count() == 1
    assert taken.events.count() == 1
