"""The JSON of a job, a job event and a push result: one way to build each.

The API serializers' output, the webhook payloads and the report payload all come from these
plain functions, so they agree field for field. Values are JSON-ready (ISO 8601 timestamps in
UTC with ``Z``, UUIDs as strings), exactly as the v1 API has always answered them.

Reading a job's representation never queries push results (the counts live on the job row); the
report comes from ``select_related("report")`` when the job was read with it.
"""

from datetime import datetime
from typing import Any

from django.utils import timezone

from reports.links import job_report, report_state
from reports.models import Report

from .models import Job, JobEvent, PushResult

# ``report`` left out: the job's own (cached by select_related, else read).
UNSET: Any = object()


def iso_datetime(value: datetime | None) -> str | None:
    """DRF's ISO 8601 rendering: the current time zone (UTC), ``Z`` for ``+00:00``."""
    if value is None:
        return None
    if timezone.is_aware(value):
        value = value.astimezone(timezone.get_current_timezone())
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def push_counts(job: Job) -> dict[str, int]:
    return {"success": job.push_success_count, "failed": job.push_failed_count}


def job_representation(job: Job, *, report: Report | None = UNSET) -> dict[str, Any]:
    """The job as ``GET /api/v1/jobs/{id}/`` answers it.

    ``report``: the job's report when the caller has it at hand (``None``: it has none);
    left out, the job's own is used (no query when the job was read with ``report`` joined).
    """
    if report is UNSET:
        report = job_report(job)
    return {
        "id": str(job.pk),
        "code": job.code,
        "type": job.type,
        "company_id": str(job.company_id),
        "status": str(job.status),
        "failure_reason": job.failure_reason or None,
        "message": job.message,
        "total_records": job.total_records,
        "effected_records": job.effected_records,
        "push_results": push_counts(job),
        "start_time": iso_datetime(job.start_time),
        "end_time": iso_datetime(job.end_time),
        "expires_at": iso_datetime(job.expires_at),
        "report": report_state(report, job=job),
        "metadata": job.metadata,
        "created_at": iso_datetime(job.created_at),
        "updated_at": iso_datetime(job.updated_at),
    }


def job_event_representation(event: JobEvent) -> dict[str, Any]:
    """One timeline entry; ``actor`` is read from ``select_related("actor")`` when listed."""
    actor = event.actor.get_username() if event.actor_id and event.actor else None
    return {
        "job_id": str(event.job_id),
        "sequence": event.sequence,
        "status": str(event.status),
        "failure_reason": event.failure_reason or None,
        "message": event.message,
        "data": event.data,
        "source": str(event.source),
        "actor": actor,
        "created_at": iso_datetime(event.created_at),
    }


def push_result_representation(result: PushResult) -> dict[str, Any]:
    return {
        "job_id": str(result.job_id),
        "push_communication_id": result.push_communication_id,
        "status": str(result.status),
        "response_code": result.response_code,
        "connection_id": result.connection_id,
        "business_name": result.business_name,
        "service_name": result.service_name,
        "data_type": result.data_type,
        "source_object_ids": result.source_object_ids,
        "requested_on": iso_datetime(result.requested_on),
        "completed_on": iso_datetime(result.completed_on),
        "validation_errors": result.validation_errors,
        "service_account_ref": result.service_account_ref,
        "request_id": result.request_id,
        "received_at": iso_datetime(result.received_at),
    }
