"""Conflicting transitions from many threads at once leave exactly one outcome (PostgreSQL)."""

import threading
from collections import Counter

import pytest
from django.db import connection

from jobs import selectors, services
from jobs.errors import JobFinished
from jobs.models import TERMINAL_STATUSES, Job, JobStatus, PushStatus
from tests.factories import ApiClientFactory, CompanyFactory, JobFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20


def _terminal_move(i: int, job_id: object) -> None:
    moves = [
        lambda: services.job_complete(job_id=job_id, message=f"thread {i}"),
        lambda: services.job_complete_with_errors(job_id=job_id, message=f"thread {i}"),
        lambda: services.job_fail(job_id=job_id, failure_reason="service_timeout"),
        lambda: services.job_cancel(job_id=job_id, actor=None),
    ]
    moves[i % len(moves)]()


@pytest.mark.parametrize("start", [JobStatus.PENDING, JobStatus.PROCESSING])
def test_conflicting_terminal_transitions_leave_one_outcome(start: JobStatus) -> None:
    job = JobFactory()
    if start == JobStatus.PROCESSING:
        services.job_start(job_id=job.pk)
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait()
            _terminal_move(i, job.pk)
            result = "won"
        except JobFinished:
            result = "job_finished"
        except BaseException as exc:
            with lock:
                unexpected.append(exc)
            return
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert unexpected == []
    assert Counter(outcomes) == {"won": 1, "job_finished": THREADS - 1}
    job = Job.objects.get(pk=job.pk)
    assert job.status in TERMINAL_STATUSES
    sequences = list(job.events.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    terminal_events = job.events.filter(status__in=[s.value for s in TERMINAL_STATUSES])
    assert terminal_events.count() == 1
    assert terminal_events.get().status == job.status


def test_concurrent_progress_reports_are_all_kept_in_one_numbered_timeline() -> None:
    """Twenty progress reports at once: each optimistic change that lost its race reads the job
    again (and, after OPTIMISTIC_TRIES lost races, takes the row lock); none is lost, none
    is doubled, the timeline stays numbered without gaps and the job row says the last word."""
    job = JobFactory(total_records=1000)
    services.job_start(job_id=job.pk)
    barrier = threading.Barrier(THREADS)
    unexpected: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait()
            services.job_record_progress(job_id=job.pk, effected_records=i, message=f"at {i}")
        except BaseException as exc:
            with lock:
                unexpected.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert unexpected == []
    job = Job.objects.get(pk=job.pk)
    events = list(job.events.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, THREADS + 3))  # created, started, 20
    progress = [e for e in events if e.status == "progress"]
    assert sorted(e.message for e in progress) == sorted(f"at {i}" for i in range(THREADS))
    assert job.last_sequence == THREADS + 2
    last = progress[-1]  # the row holds what the last numbered change wrote
    assert (job.message, job.effected_records) == (last.message, last.data["effected_records"])
    assert last.snapshot["effected_records"] == job.effected_records


def test_a_push_result_between_the_read_and_the_change_is_in_the_changes_snapshot() -> None:
    """A push result changes the job's counts without a timeline event; a job change that read
    the job before it must not log (and answer, and send) a snapshot without it: the
    optimistic write sees the counts moved, reads again and decides again."""
    company = CompanyFactory()
    user = ApiClientFactory(company=company)
    job = JobFactory(company=company, total_records=5)
    services.job_start(job_id=job.pk)
    read_with = selectors.api_user_get(user.pk, job=("id", job.pk))  # the request's read

    services.push_result_record(  # lands between that read and the change
        job_id=job.pk,
        data=services.PushResultData(push_communication_id="p-1", status=PushStatus.SUCCESS),
    )
    event = services.job_apply_event(
        job_id=job.pk, status="completed", company=company, read_with=read_with
    )

    job.refresh_from_db()
    assert job.push_success_count == 1
    assert event.snapshot["push_results"] == {"success": 1, "failed": 0}
    assert event.snapshot["updated_at"] == job.updated_at.isoformat().replace("+00:00", "Z")
