"""Expiry of jobs that stopped reporting."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import services
from jobs.models import Job, JobEvent, JobStatus
from jobs.representation import ROW_IMAGE, job_representation, snapshot_representation
from tests.factories import CompanyFactory, JobFactory, job_in_status
from tests.relay import run_relay
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


def make_stale(*jobs: Job, seconds: int = 1) -> None:
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        expires_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_stale_active_jobs_expire_with_a_system_event_and_webhook() -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/", events=["jobs.failed"])
    pending = JobFactory(company=company)
    processing = job_in_status(JobStatus.PROCESSING, company=company)
    fresh = job_in_status(JobStatus.PROCESSING, company=company)
    finished = job_in_status(JobStatus.COMPLETED, company=company)
    make_stale(pending, processing)
    Job.objects.filter(pk=finished.pk).update(expires_at=timezone.now() - timedelta(days=1))

    assert services.jobs_expire_stale() == 2
    assert run_relay() == 2  # the two expiry events: the rest was relayed by job_in_status

    for job in (pending, processing):
        job.refresh_from_db()
        assert (job.status, job.failure_reason) == ("failed", "job_expired")
        assert job.end_time is not None and job.start_time is not None
        assert job.expires_at is None
        last = job.events.order_by("sequence").last()
        assert last is not None
        assert (last.status, last.failure_reason, last.source, last.actor) == (
            "failed",
            "job_expired",
            "system",
            None,
        )
        assert list(job.events.values_list("sequence", flat=True)) == list(
            range(1, job.events.count() + 1)
        )
        [delivery] = WebhookDelivery.objects.filter(object_id=str(job.pk))
        assert delivery.events_id == "jobs.failed"
        assert delivery.payload["data"]["failure_reason"] == "job_expired"
        assert delivery.payload["data"]["status"] == "failed"
        assert delivery.payload["data"]["job_event"]["source"] == "system"
    fresh.refresh_from_db()
    finished.refresh_from_db()
    assert fresh.status == "processing" and finished.status == "completed"


def test_expiry_writes_set_based_with_no_job_read_into_python() -> None:
    jobs = [JobFactory() for _ in range(30)]
    make_stale(*jobs)
    with CaptureQueriesContext(connection) as queries:
        assert services.jobs_expire_stale() == 30
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))
    ]
    if connection.vendor == "postgresql":
        # lock, update and log in one statement: the rows never leave the database
        [statement] = statements
        assert statement.split()[:2] == ["WITH", "failed"]
        assert "FOR UPDATE SKIP LOCKED" in statement and "RETURNING" in statement
        assert "INSERT INTO jobs_jobevent" in statement
    else:
        # lock the stale ids, one UPDATE of the jobs, one INSERT ... SELECT of their events
        assert [s.split()[0] for s in statements] == ["SELECT", "UPDATE", "INSERT"]
        assert statements[2].startswith('INSERT INTO "jobs_jobevent"')
        assert " SELECT " in statements[2]
    assert JobEvent.objects.filter(failure_reason="job_expired").count() == 30


def test_expiry_snapshot_renders_as_the_failed_jobs_representation() -> None:
    job = job_in_status(JobStatus.PROCESSING, total_records=10)
    services.job_record_progress(
        job_id=job.pk, effected_records=4, metadata={"batch": [1, "two"], "nested": {"ok": True}}
    )
    services.push_result_record(
        job_id=job.pk, data=services.PushResultData(push_communication_id="p", status="failed")
    )
    other = JobFactory()  # pending: no start time yet
    make_stale(job, other)
    assert services.jobs_expire_stale() == 2
    for expired in (job, other):
        event = expired.events.get(status="failed")
        assert event.sequence == expired.events.filter(sequence__isnull=False).count()
        assert event.snapshot is not None and set(event.snapshot) == {ROW_IMAGE}
        current = Job.objects.select_related("report").get(pk=expired.pk)
        assert snapshot_representation(event.snapshot) == job_representation(current)
    rendered = snapshot_representation(job.events.get(status="failed").snapshot)
    assert rendered["metadata"] == {"batch": [1, "two"], "nested": {"ok": True}}
    assert rendered["push_results"] == {"success": 0, "failed": 1}
    assert (rendered["effected_records"], rendered["total_records"]) == (4, 10)
    assert rendered["report"] == {"status": "none", "url": None}


def test_nothing_stale_expires_nothing() -> None:
    JobFactory()
    assert services.jobs_expire_stale() == 0


def test_batches_cover_every_stale_job() -> None:
    jobs = [JobFactory() for _ in range(7)]
    make_stale(*jobs)
    assert services.jobs_expire_stale(batch_size=3) == 7
    assert Job.objects.filter(status="failed").count() == 7
    assert JobEvent.objects.filter(failure_reason="job_expired").count() == 7


def test_expires_after_default_and_override(settings) -> None:
    settings.JOBTRAIL_JOB_EXPIRES_AFTER = 1234
    default = JobFactory()
    custom = JobFactory(expires_after=2)
    assert default.expires_after == 1234
    assert custom.expires_after == 2
    assert custom.expires_at == custom.last_activity_at + timedelta(seconds=2)


@pytest.mark.parametrize("activity", ["progress", "event", "push_result"])
def test_activity_postpones_expiry(activity: str) -> None:
    job = job_in_status(JobStatus.PROCESSING, expires_after=60)
    make_stale(job)
    if activity == "progress":
        services.job_record_progress(job_id=job.pk, message="still going")
    elif activity == "event":
        Job.objects.filter(pk=job.pk).update(status="pending")
        services.job_start(job_id=job.pk)
    else:
        services.push_result_record(
            job_id=job.pk,
            data=services.PushResultData(push_communication_id="p", status="success"),
        )
    assert services.jobs_expire_stale() == 0
    job.refresh_from_db()
    assert job.status == "processing"
    assert job.expires_at > timezone.now() + timedelta(seconds=50)


def test_command_prints_how_many() -> None:
    make_stale(JobFactory(), JobFactory())
    out = StringIO()
    call_command("expire_stale_jobs", stdout=out)
    assert out.getvalue().strip() == "Expired 2 stale jobs."
    out = StringIO()
    call_command("expire_stale_jobs", stdout=out)
    assert out.getvalue().strip() == "Expired 0 stale jobs."
