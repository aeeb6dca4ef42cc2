"""The JSON of a job, a job event and a push result: one way to build each.

The API serializers' output, the webhook payloads and the report payload all come from these
plain functions, so they agree field for field. Values are JSON-ready (ISO 8601 timestamps in
UTC with ``Z``, UUIDs as strings), exactly as the v1 API has always answered them.

Reading a job's representation never queries push results (the counts live on the job row); the
report comes from ``select_related("report")`` when the job was read with it.
"""

from datetime import UTC, datetime, tzinfo
from typing import Any

from django.db.models import F, Func, JSONField
from django.db.models.functions import JSONObject
from django.utils import timezone

from reports.links import job_report, report_state
from reports.models import Report

from .models import Job, JobEvent, PushResult

# ``report`` left out: the job's own (cached by select_related, else read).
UNSET: Any = object()


def iso_datetime(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """DRF's ISO 8601 rendering: the current time zone (UTC), ``Z`` for ``+00:00``.

    ``zone``: the current time zone when the caller has it at hand (looking it up is a context
    variable read: a representation with five timestamps looks it up once).
    """
    if value is None:
        return None
    if value.utcoffset() is not None:
        value = value.astimezone(zone or timezone.get_current_timezone())
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def push_counts(job: Job) -> dict[str, int]:
    return {"success": job.push_success_count, "failed": job.push_failed_count}


def job_representation(
    job: Job, *, report: Report | None = UNSET, zone: tzinfo | None = None
) -> dict[str, Any]:
    """The job as ``GET /api/v1/jobs/{id}/`` answers it.

    ``report``: the job's report when the caller has it at hand (``None``: it has none);
    left out, the job's own is used (no query when the job was read with ``report`` joined).
    ``zone``: the current time zone, when the caller renders many (see ``iso_datetime``).
    """
    if report is UNSET:
        report = job_report(job)
    zone = zone or timezone.get_current_timezone()
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
        "start_time": iso_datetime(job.start_time, zone),
        "end_time": iso_datetime(job.end_time, zone),
        "expires_at": iso_datetime(job.expires_at, zone),
        "report": report_state(report, job=job),
        "metadata": job.metadata,
        "created_at": iso_datetime(job.created_at, zone),
        "updated_at": iso_datetime(job.updated_at, zone),
    }


# --- row images: a job's row as JSON, written by the database in set-based changes -------------

# The key of a snapshot that holds a row image instead of the representation.
ROW_IMAGE = "job_row"


class _JSONColumn(Func):
    """A JSON column nested as JSON (SQLite stores it as text, which ``json()`` parses)."""

    template = "%(expressions)s"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="JSON(%(expressions)s)", **extra)


def job_row_image() -> JSONObject:
    """A SQL expression: ``{"job_row": {<column>: <value>, ...}}`` of the job row it reads.

    Set-based changes (expiry, bulk cancel) write it as their events' snapshot in the same
    ``INSERT ... SELECT`` that logs the events, so no job is read into Python; the relay
    renders it with ``snapshot_representation``, through ``job_representation`` like any other.
    """
    columns = {
        str(f.column): _JSONColumn(F(f.attname), output_field=JSONField())
        if isinstance(f, JSONField)
        else F(f.attname)
        for f in Job._meta.concrete_fields
    }
    return JSONObject(**{ROW_IMAGE: JSONObject(**columns)})


def job_row_image_sql(alias: str) -> str:
    """``job_row_image`` in PostgreSQL's SQL, of the job row named ``alias`` (all its columns)."""
    return f"jsonb_build_object('{ROW_IMAGE}', to_jsonb({alias}))"


def job_from_row_image(row: dict[str, Any]) -> Job:
    """The (unsaved) ``Job`` a row image shows, its values converted as a read would."""
    values: dict[str, Any] = {}
    for f in Job._meta.concrete_fields:
        value = row.get(str(f.column))
        if value is not None and not isinstance(f, JSONField):
            value = f.to_python(value)
            if isinstance(value, datetime) and timezone.is_naive(value):
                value = value.replace(tzinfo=UTC)  # SQLite keeps UTC without an offset
        values[f.attname] = value
    return Job(**values)


def snapshot_representation(
    snapshot: dict[str, Any], *, zone: tzinfo | None = None
) -> dict[str, Any]:
    """The job's representation that an event's snapshot holds.

    A row image (set-based changes) is rendered here; it is shown without a report: only
    active jobs are changed set-based (expired, canceled), and an active job has no report.
    """
    row = snapshot.get(ROW_IMAGE)
    if row is None:
        return snapshot
    return job_representation(job_from_row_image(row), report=None, zone=zone)


def job_event_representation(event: JobEvent, *, zone: tzinfo | None = None) -> dict[str, Any]:
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
        "created_at": iso_datetime(event.created_at, zone),
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
