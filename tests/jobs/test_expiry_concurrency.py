"""Expiry under duplication and races (PostgreSQL, real threads)."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import services
from jobs.errors import JobFinished
from jobs.models import Job, JobEvent, JobStatus
from tests.factories import CompanyFactory, JobFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run_together(*targets) -> list[object]:
    barrier = threading.Barrier(len(targets))
    results: list[object] = [None] * len(targets)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = targets[i]()
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_expiry_runs_at_once_expire_each_job_once() -> None:
    company = CompanyFactory()
    jobs = [JobFactory(company=company) for _ in range(120)]
    Job.objects.update(expires_at=timezone.now() - timedelta(seconds=5))

    results = _run_together(
        lambda: services.jobs_expire_stale(batch_size=25),
        lambda: services.jobs_expire_stale(batch_size=25),
        lambda: services.jobs_expire_stale(batch_size=25),
    )

    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == len(jobs)  # type: ignore[arg-type]
    per_job = Counter(
        JobEvent.objects.filter(failure_reason="job_expired").values_list("job_id", flat=True)
    )
    assert len(per_job) == len(jobs) and set(per_job.values()) == {1}
    assert Job.objects.filter(status="failed", failure_reason="job_expired").count() == len(jobs)


@pytest.mark.parametrize("move", ["progress", "complete"])
def test_event_racing_expiry_ends_in_one_consistent_state(move: str) -> None:
    outcomes: Counter[str] = Counter()
    for _ in range(25):
        job = JobFactory()
        services.job_start(job_id=job.pk)
        Job.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=5))
        events_before = job.events.count()

        def event(job_id=job.pk):  # type: ignore[no-untyped-def]
            if move == "progress":
                return services.job_record_progress(job_id=job_id, message="alive")
            return services.job_complete(job_id=job_id)

        event_result, expired = _run_together(event, services.jobs_expire_stale)
        job.refresh_from_db()
        terminal_events = job.events.filter(status__in=["completed", "failed"]).count()
        expiry_events = job.events.filter(failure_reason="job_expired").count()
        if isinstance(event_result, JobFinished):
            assert (job.status, job.failure_reason, expired) == ("failed", "job_expired", 1)
            assert expiry_events == 1  # expired once, its event written once
            assert job.events.count() == events_before + 1  # the refused event wrote nothing
            outcomes["expiry won"] += 1
        else:
            assert not isinstance(event_result, BaseException), event_result
            assert expired == 0
            assert expiry_events == 0
            expected = JobStatus.PROCESSING if move == "progress" else JobStatus.COMPLETED
            assert job.status == expected and job.failure_reason == ""
            assert job.events.count() == events_before + 1  # the event, once
            if move == "progress":  # the event refreshed the expiry
                assert job.expires_at is not None and job.expires_at > timezone.now()
            outcomes["event won"] += 1
        assert terminal_events == (0 if job.status == "processing" else 1)
        seqs = list(job.events.order_by("sequence").values_list("sequence", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    # across all races: every job the expiry reported is expired exactly once, and no other
    expired_jobs = Job.objects.filter(failure_reason="job_expired")
    assert expired_jobs.count() == outcomes["expiry won"]
    assert JobEvent.objects.filter(failure_reason="job_expired").count() == outcomes["expiry won"]
    left = JobStatus.PROCESSING if move == "progress" else JobStatus.COMPLETED
    assert Job.objects.filter(status=left).count() == outcomes["event won"]
