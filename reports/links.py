"""The report's public face: its state in a job's representation and its signed, expiring link.

Kept apart from ``reports.services`` (which builds reports and fires their webhook with the job's
representation) so ``jobs.representation`` can show a report without importing the services.
"""

from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

from jobs.models import Job, JobStatus

from .models import Report, ReportStatus

SIGNING_SALT = "jobtrail.reports.download"
# A finished job in one of these statuses always gets a report built.
REPORTABLE_STATUSES = (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS)


def download_token(report: Report, *, ttl: int | None = None) -> str:
    claims: dict[str, Any] = {
        "r": report.pk,
        "c": str(report.job.company_id),
        "v": report.ready_at and report.ready_at.timestamp(),
    }
    if ttl is not None:  # a lifetime of its own (checked against the signing time)
        claims["t"] = ttl
    return signing.dumps(claims, salt=SIGNING_SALT, compress=True)


def download_url(report: Report, *, ttl: int | None = None) -> str:
    """An absolute, signed link that expires after ``ttl`` seconds (by default
    ``JOBTRAIL_REPORT_LINK_TTL``)."""
    path = reverse("report-download", args=[download_token(report, ttl=ttl)])
    return settings.JOBTRAIL_PUBLIC_URL.rstrip("/") + path


def webhook_link_ttl() -> int:
    """How long the link in a ``jobs.report.ready`` webhook stays valid: as long as the
    webhook's attempts go on (its retry schedule, plus an hour to follow the last one), and
    never less than an API answer's link."""
    retries = int(sum(settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE))
    return max(settings.JOBTRAIL_REPORT_LINK_TTL, retries + 3600)


def report_state(report: Report | None, *, job: Job | None = None) -> dict[str, Any]:
    """What the job representation shows: ``{status, url}``.

    A completed job whose report row is not written yet (its build is requested with the
    completion, or by the relay right after it) shows ``pending``: the API answer and the
    webhook payload of the same change agree, whichever side wrote the row first.
    """
    if report is None:
        if job is not None and job.status in REPORTABLE_STATUSES:
            return {"status": ReportStatus.PENDING.value, "url": None}
        return {"status": "none", "url": None}
    if report.status == ReportStatus.READY and job is not None and report_outdated(report, job):
        return {"status": ReportStatus.PENDING.value, "url": None}
    url = download_url(report) if report.status == ReportStatus.READY else None
    return {"status": str(report.status), "url": url}


def report_outdated(report: Report, job: Job) -> bool:
    """A ready report that misses push results the job holds: one recorded after the build
    read the job's count (a late result) commits before the relay asks for the rebuild, and
    the file must not be handed out as the job's report meanwhile. The job row counts push
    results in the transaction that stores each; the build keeps the count it covered
    (``push_count``; reports built before it was kept are taken as current)."""
    if report.push_count is None:
        return False
    return report.push_count != pushes_recorded(job)


def pushes_recorded(job: Job) -> int:
    """How many push results the job holds (counted on its row)."""
    return job.push_success_count + job.push_failed_count


def job_report(job: Job) -> Report | None:
    """The job's report (from ``select_related("report")`` when the job was read with it)."""
    try:
        return job.report
    except Report.DoesNotExist:
        return None
