"""A job's timeline is numbered from ``Job.last_sequence`` on its locked row: no writer reads the
events to number the next one, and the set-based writers (expiry, bulk cancel) keep it too."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import services
from jobs.models import EventSource, Job, JobStatus
from tests.factories import CompanyFactory, JobFactory, job_in_status

pytestmark = pytest.mark.django_db


def _timeline(job: Job) -> list[int]:
    return list(
        job.events.filter(sequence__isnull=False)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )


def test_each_change_numbers_its_event_after_the_last_one() -> None:
    job = JobFactory(total_records=10)
    services.job_start(job_id=job.pk)
    services.job_record_progress(job_id=job.pk, effected_records=3)
    services.job_complete(job_id=job.pk)

    job.refresh_from_db()
    assert _timeline(job) == [1, 2, 3, 4]
    assert job.last_sequence == 4


def test_an_event_reads_no_event_to_number_itself() -> None:
    job = JobFactory()

    with CaptureQueriesContext(connection) as queries:
        services.job_start(job_id=job.pk)

    on_events = [q["sql"] for q in queries.captured_queries if '"jobs_jobevent"' in q["sql"]]
    assert len(on_events) == 1 and on_events[0].startswith("INSERT"), on_events


def test_expiry_numbers_the_failed_event_from_the_job_row() -> None:
    job = job_in_status(JobStatus.PROCESSING)
    services.job_record_progress(job_id=job.pk, effected_records=1)
    Job.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert services.jobs_expire_stale() == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert _timeline(job) == [1, 2, 3, 4]
    assert job.last_sequence == 4


def test_bulk_cancel_numbers_each_jobs_event_from_its_row() -> None:
    company = CompanyFactory()
    fresh = JobFactory(company=company)
    busy = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_record_progress(job_id=busy.pk, effected_records=2)

    canceled, finished = services.jobs_cancel(
        job_ids=[fresh.pk, busy.pk], actor=None, source=EventSource.ADMIN
    )

    assert (sorted(canceled), finished) == (sorted([fresh.pk, busy.pk]), 0)
    fresh.refresh_from_db()
    busy.refresh_from_db()
    assert (_timeline(fresh), fresh.last_sequence) == ([1, 2], 2)
    assert (_timeline(busy), busy.last_sequence) == ([1, 2, 3, 4], 4)


class _Editor:
    connection = connection


def test_the_migration_sets_last_sequence_from_existing_events() -> None:
    job = job_in_status(JobStatus.COMPLETED)
    untouched = JobFactory()
    Job.objects.update(last_sequence=0)  # as before the migration
    migration = importlib.import_module("jobs.migrations.0012_job_last_sequence")

    migration.backfill(apps, _Editor())

    job.refresh_from_db()
    untouched.refresh_from_db()
    assert (job.last_sequence, untouched.last_sequence) == (len(_timeline(job)), 1)
    assert job.last_sequence >= 2
