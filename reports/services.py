"""Build CSV reports by streaming push results, and hand out signed, expiring links."""

import csv
import io
import logging
import tempfile
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.outbox import publish_on_commit
from jobs.errors import LinkExpired, LinkInvalid, ReportNotPossible
from jobs.models import EventSource, Job, JobEvent, JobEventKind, PushResult
from jobs.representation import job_representation

from .cells import safe_cell
from .links import (  # noqa: F401 - re-exported: the report's state and link live in .links
    REPORTABLE_STATUSES,
    SIGNING_SALT,
    download_token,
    download_url,
    job_report,
    report_state,
)
from .models import Report, ReportStatus

logger = logging.getLogger(__name__)

HEADER = [
    "push_communication_id",
    "status",
    "response_code",
    "data_type",
    "service_name",
    "source_object_ids",
    "requested_on",
    "completed_on",
    "validation_errors",
]
CHUNK = 2000


BUILD_TASK = "reports.build_job_report"


def reports_request(*, job_ids: list[Any]) -> int:
    """Mark the jobs' reports pending (one upsert) and queue their builds after the commit.

    Idempotent: a report already pending stays pending; a ready one is rebuilt. A lost build
    message is queued again by ``reports_queue_pending``. Return how many were requested.
    """
    if not job_ids:
        return 0
    Report.objects.bulk_create(
        [Report(job_id=job_id, status=ReportStatus.PENDING) for job_id in job_ids],
        update_conflicts=True,
        unique_fields=["job"],
        update_fields=["status", "error", "build_started_at", "updated_at"],
    )
    for job_id in job_ids:
        publish_on_commit(BUILD_TASK, (str(job_id),))
    return len(job_ids)


def report_request(*, job: Job) -> Report:
    """Mark one job's report pending and queue its build after the commit (idempotent)."""
    reports_request(job_ids=[job.pk])
    return Report.objects.get(job=job)


def report_rebuild(*, job: Job) -> Report:
    """Build a finished job's report again (staff action)."""
    job.refresh_from_db(fields=["status"])
    if job.status not in REPORTABLE_STATUSES:
        raise ReportNotPossible(
            f"Job {job.code} is {job.status}: only completed jobs have reports."
        )
    with transaction.atomic():
        return report_request(job=job)


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def _csv_row(row: tuple[Any, ...]) -> list[Any]:
    (push_id, status, code, data_type, service, source_ids, requested, completed, errors) = row
    cells = [
        push_id,
        status,
        "" if code is None else code,
        data_type,
        service,
        ";".join(str(i) for i in source_ids or []),
        _iso(requested),
        _iso(completed),
        " | ".join(
            f"{e.get('field', '')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
            for e in errors or []
        ),
    ]
    return [safe_cell(cell) for cell in cells]  # no cell opens as a formula (reports.cells)


def write_report_csv(*, job_id: Any, out: Any) -> int:
    """Write the CSV to the text stream ``out``, reading rows in chunks; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    rows = (
        PushResult.objects.filter(job_id=job_id)
        .order_by("id")
        .values_list(*HEADER)  # the columns are the field names
        .iterator(chunk_size=CHUNK)
    )
    count = 0
    for row in rows:
        writer.writerow(_csv_row(row))
        count += 1
    return count


def _build_lease() -> timedelta:
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)


def report_build(*, job_id: Any) -> Report | None:
    """Build the job's CSV into storage, mark the report ready and fire ``jobs.report.ready``.

    Only a pending report is built, by one build at a time (a lease on ``build_started_at``);
    a duplicate task, or one whose request was superseded by a newer one, does nothing.
    """
    started = timezone.now()
    claimed = (
        Report.objects.filter(
            job_id=job_id,
            status=ReportStatus.PENDING,
            job__status__in=REPORTABLE_STATUSES,
        )
        .filter(Q(build_started_at__isnull=True) | Q(build_started_at__lt=started - _build_lease()))
        .update(build_started_at=started)
    )
    if not claimed:
        logger.info("no pending report to build for job %s", job_id)
        return None
    report = Report.objects.select_related("job").get(job_id=job_id)
    job = report.job
    with tempfile.TemporaryFile(mode="w+b") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        rows = write_report_csv(job_id=job.pk, out=text)
        text.flush()
        text.detach()
        size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
        name = report.file.storage.save(
            f"reports/{timezone.now():%Y/%m}/{job.pk}.csv", File(raw, name=f"{job.pk}.csv")
        )
    with transaction.atomic():
        report = Report.objects.select_for_update().get(pk=report.pk)
        if report.status != ReportStatus.PENDING or report.build_started_at != started:
            superseded = True  # a newer request (or a build that outlived its lease) owns it
        else:
            superseded = False
            old_name = report.file.name if report.file else ""
            report.file.name = name
            report.status = ReportStatus.READY
            report.row_count = rows
            report.size_bytes = size
            report.error = ""
            report.ready_at = timezone.now()
            report.build_started_at = None
            report.save()
            # logged for the relay, which sends jobs.report.ready
            JobEvent.objects.create(
                job=job,
                kind=JobEventKind.REPORT_READY,
                source=EventSource.SYSTEM,
                data={"rows": report.row_count, "size_bytes": report.size_bytes},
                snapshot=_ready_payload(job, report),
            )
            publish_on_commit("jobs.relay_events")
    if superseded:
        report.file.storage.delete(name)
        return None
    if old_name and old_name != name:
        report.file.storage.delete(old_name)
    return report


def _ready_payload(job: Job, report: Report) -> dict[str, Any]:
    job.refresh_from_db()  # the job as it is now (counts included: they live on the row)
    data = job_representation(job, report=report)
    data["report"].update(rows=report.row_count, size_bytes=report.size_bytes)
    return data


def reports_queue_pending(*, older_than_seconds: int = 60) -> int:
    """Queue builds for reports still pending after a while (their task was lost)."""
    from .tasks import build_job_report

    now = timezone.now()
    stale = Report.objects.filter(
        status=ReportStatus.PENDING, updated_at__lt=now - timedelta(seconds=older_than_seconds)
    ).filter(Q(build_started_at__isnull=True) | Q(build_started_at__lt=now - _build_lease()))
    job_ids = list(stale.values_list("job_id", flat=True)[:500])
    Report.objects.filter(job_id__in=job_ids).update(updated_at=now)  # once per interval
    for job_id in job_ids:
        build_job_report.apply_async((str(job_id),), retry=False)
    return len(job_ids)


def report_fail(*, job_id: Any, error: str) -> None:
    Report.objects.filter(job_id=job_id).update(
        status=ReportStatus.FAILED, error=error[:2000], updated_at=timezone.now()
    )


# --- signed links -----------------------------------------------------------------------------


def report_from_token(token: str) -> Report:
    try:
        claims = signing.loads(token, salt=SIGNING_SALT, max_age=settings.JOBTRAIL_REPORT_LINK_TTL)
    except signing.SignatureExpired as exc:
        raise LinkExpired from exc
    except signing.BadSignature as exc:
        raise LinkInvalid from exc
    report = (
        Report.objects.select_related("job")
        .filter(pk=claims.get("r"), job__company_id=claims.get("c"), status=ReportStatus.READY)
        .first()
    )
    if report is None or (report.ready_at and report.ready_at.timestamp()) != claims.get("v"):
        raise LinkInvalid  # rebuilt or gone since the link was made
    return report


def report_filename(report: Report) -> str:
    return f"{report.job.code}-report.csv"
