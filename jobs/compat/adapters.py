"""Translate jobs into the seed shapes. No business logic: read the job, rename, format."""

from datetime import datetime
from typing import Any

from jobs import selectors
from jobs.models import FailureReason, Job, JobStatus
from reports.models import ReportStatus

EXPORT_STATUS = {
    JobStatus.PENDING: "SCHEDULED",
    JobStatus.PROCESSING: "RUNNING",
    JobStatus.COMPLETED: "SUCCESSFUL",
    JobStatus.COMPLETED_WITH_ERRORS: "SUCCESSFUL",
    JobStatus.FAILED: "FAILED",
}
API_JOB_STATUS = {
    JobStatus.PENDING: "pending",
    JobStatus.PROCESSING: "processing",
    JobStatus.COMPLETED: "completed",
    JobStatus.COMPLETED_WITH_ERRORS: "completed",
    JobStatus.FAILED: "failed",
}
FAILED_RECORDS_LISTED = 50
RULE = "---------------------------"


def export_status(job: Job) -> str:
    if job.status == JobStatus.FAILED and job.failure_reason == FailureReason.CANCELED_BY_USER:
        return "CANCELLED"
    return EXPORT_STATUS[JobStatus(job.status)]


REPORT_FAILED_ERROR = {
    "code": 500,
    "fieldName": "filePath",
    "description": "The job finished, but its CSV report could not be built. Support can "
    "build it again from the console (the job's Rebuild report); then this job reads "
    "SUCCESSFUL with its link.",
    "message": "Report not available",
    "errorParams": {},
}


def export_job_status(job: Job, *, report: dict[str, Any]) -> dict[str, Any]:
    """Seed 002's answer for a known job (``report``: ``reports.links.report_state``).

    Seed 002: "Once the status becomes SUCCESSFUL, the link to download the report in .csv
    format is also sent in the response." So a finished job whose link is not there yet (the
    report is being built, or built again after a late push result) reads RUNNING, and one
    whose report could not be built reads FAILED with an error saying so (a staff rebuild
    turns it SUCCESSFUL with its link).
    """
    counts = selectors.job_push_counts(job)
    warnings = []
    if job.status == JobStatus.COMPLETED and counts["failed"]:
        warnings.append(
            {
                "code": 1,
                "message": "Completed with failed push results",
                "description": f"The job was reported completed, but {counts['failed']} push "
                "result(s) failed.",
            }
        )
    if job.status == JobStatus.COMPLETED_WITH_ERRORS:
        total = counts["failed"] + counts["success"]
        warnings.append(
            {
                "code": 2,
                "message": "Completed with errors",
                "description": f"{counts['failed']} of {total} push result(s) failed."
                if total
                else "The job was reported completed with errors; no push results were recorded.",
            }
        )
    status = export_status(job)
    file_path = report["url"]
    errors = []
    if status == "SUCCESSFUL" and file_path is None:
        if report["status"] == ReportStatus.FAILED:
            status = "FAILED"
            errors.append(dict(REPORT_FAILED_ERROR))
        else:
            status = "RUNNING"  # the report is on its way: SUCCESSFUL comes with its link
    message = job.message or f"Export job {job.code} is {status}"
    if job.status == JobStatus.FAILED:
        message = f"{message} ({job.failure_reason})"
    return {
        "successful": True,
        "message": message,
        "errors": errors,
        "warnings": warnings,
        "status": status,
        "filePath": file_path,
    }


def export_job_status_error(*, description: str, message: str, code: int = 404) -> dict[str, Any]:
    """Seed 002's answer when the request names no known job (HTTP 200, as that API does)."""
    return {
        "successful": False,
        "message": message,
        "errors": [
            {
                "code": code,
                "fieldName": "jobCode",
                "description": description,
                "message": message,
                "errorParams": {},
            }
        ],
        "warnings": [],
        "status": None,
        "filePath": None,
    }


def _seconds(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def _micro(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _failed_records_message(job: Job) -> str:
    failed = selectors.failed_push_results(job=job, limit=FAILED_RECORDS_LISTED)
    if not failed:
        return ""
    blocks = []
    for result in failed:
        errors = (
            "\n".join(
                f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
                for e in result.validation_errors
            )
            or f"Push failed with response code {result.response_code}."
        )
        blocks.append(
            f"Push ID: {result.push_communication_id} failed with the following errors:\n\n{errors}"
        )
    more = selectors.job_push_counts(job)["failed"] - len(failed)
    if more > 0:
        blocks.append(f"… and {more} more failed push result(s).")
    return RULE + "\n" + f"\n{RULE}{RULE}\n".join(blocks) + "\n" + RULE


def api_job(job: Job) -> dict[str, Any]:
    """Seed 003's API job record. Its ``message`` "will contain any error/information message
    produced during the job": a failed job's names its failure reason (as seed 002's does)."""
    message = job.message
    if job.status == JobStatus.COMPLETED_WITH_ERRORS:
        listing = _failed_records_message(job)
        message = f"{message}\n{listing}" if message and listing else (listing or message)
        # seed 003 has no status of its own for it ("completed"): the message says so
        message = message or "Completed with errors"
    if job.status == JobStatus.FAILED:
        reason = f"({job.failure_reason})"
        message = f"{message} {reason}" if message else f"Failed {reason}"
    return {
        "id": str(job.pk),
        "type": job.type,
        "company_id": str(job.company_id),
        "start_time": _seconds(job.start_time),
        "end_time": _seconds(job.end_time),
        "status": API_JOB_STATUS[JobStatus(job.status)],
        "message": message,
        # a job created without a total: the records known to be accepted are those effected
        # (0 would read as fewer accepted than effected)
        "total_records": job.effected_records if job.total_records is None else job.total_records,
        "effected_records": job.effected_records,
        "created_at": _micro(job.created_at),
        "updated_at": _micro(job.updated_at),
    }
