"""Build CSV reports by streaming push results, and hand out signed, expiring links."""

import csv
import io
import logging
import secrets
import tempfile
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.db import connection, transaction
from django.utils import timezone

from config import leases
from config.outage import DATABASE_ERRORS
from config.outbox import publish_on_commit
from jobs.errors import LinkExpired, LinkInvalid, ReportNotPossible
from jobs.models import EventSource, Job, JobEvent, JobEventKind, PushResult
from jobs.representation import job_representation

from .cells import AFTER_SEMICOLON_SQL, FORMULA_TRIGGERS, safe_cell
from .links import (  # noqa: F401 - re-exported: the report's state and link live in .links
    REPORTABLE_STATUSES,
    SIGNING_SALT,
    download_token,
    download_url,
    job_report,
    pushes_recorded,
    report_state,
    webhook_link_ttl,
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
COPY_BLOCK = 1 << 18  # bytes of CSV written to the file at a time


BUILD_TASK = "reports.build_job_report"


def reports_request(*, job_ids: list[Any]) -> int:
    """Mark the jobs' reports pending (one upsert) and queue their builds after the commit.

    Idempotent: a report already pending stays pending; a ready one is rebuilt. A lost build
    message is queued again by ``reports_queue_pending``. Return how many were requested.
    The rows are taken in one order (the upsert locks them in the order given): two relays
    requesting the same jobs in their events' orders would deadlock.
    """
    if not job_ids:
        return 0
    job_ids = [job_id for _, job_id in sorted({str(j): j for j in job_ids}.items())]
    Report.objects.bulk_create(
        [Report(job_id=job_id, status=ReportStatus.PENDING) for job_id in job_ids],
        update_conflicts=True,
        unique_fields=["job"],
        update_fields=["status", "error", "locked_until", "updated_at"],
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


# --- the CSV's cells -----------------------------------------------------------------------------
# Every cell is text made by one of two writers that agree byte for byte on what the API stores
# (source ids: a list of strings; validation errors: a list of {field, message} strings):
# - PostgreSQL: the database formats each cell (``_POSTGRESQL_CELLS``, each through
#   ``_pg_cell``) and writes the CSV itself (``COPY ... TO STDOUT (FORMAT csv)``); Python only
#   copies the bytes to the file, so a million rows take no Python object per value.
#   PostgreSQL quotes a cell holding a bare carriage return; Python's writer does too, through
#   ``_Rows`` (told rows end in ``\n`` it left it bare, and readers split the row there).
# - other databases (SQLite): ``_csv_row`` and ``csv.writer``.
# A rule for every cell goes into ``_pg_cell`` and ``_csv_row``: both apply ``reports.cells``
# (no cell opens as a formula).


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


def _pg_iso(column: str) -> str:
    # datetime.isoformat() in UTC with Z: microseconds only when there are any
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), "
        "'.000000', '') || 'Z'"
    )


_PG_TRIGGERS = ", ".join(str(ord(char)) for char in FORMULA_TRIGGERS)  # ascii() of each

_POSTGRESQL_CELLS = [
    "push_communication_id",
    "status",
    "response_code::text",
    "data_type",
    "service_name",
    # source ids: most hold one
    "CASE WHEN jsonb_typeof(source_object_ids) <> 'array' THEN NULL "
    "WHEN jsonb_array_length(source_object_ids) <= 1 THEN source_object_ids ->> 0 "
    "ELSE array_to_string(ARRAY(SELECT jsonb_array_elements_text(source_object_ids)), ';') END",
    _pg_iso("requested_on"),
    _pg_iso("completed_on"),
    "CASE WHEN jsonb_typeof(validation_errors) <> 'array' OR validation_errors = '[]' "
    "THEN NULL ELSE (SELECT string_agg(CASE WHEN jsonb_typeof(e) = 'object' THEN "
    "COALESCE(e ->> 'field', '') || ': ' || COALESCE(e ->> 'message', '') "
    "ELSE e #>> '{}' END, ' | ' ORDER BY n) "
    "FROM jsonb_array_elements(validation_errors) WITH ORDINALITY AS t(e, n)) END",
]


def _pg_cell(column: str) -> str:
    """The SQL of a cell: ``safe_cell`` (a leading ``'`` before a formula trigger), and NULL
    for an empty cell (COPY writes NULL bare and an empty string as ``""``; csv.writer: bare)."""
    # each part after a ';' too (reports.cells.AFTER_SEMICOLON), looked for only in a cell
    # that holds a ';'
    made = (
        f"CASE WHEN strpos({column}, ';') = 0 THEN {column} "
        f"ELSE regexp_replace({column}, E'{AFTER_SEMICOLON_SQL}', ';''\\1', 'g') END"
    )
    return (
        f"CASE WHEN ascii({column}) IN ({_PG_TRIGGERS}) THEN '''' || {made} "
        f"ELSE NULLIF({made}, '') END"
    )


def _copy_postgresql(job_id: Any, out: Any) -> int:
    """Write the job's rows as CSV through ``COPY``; return how many."""
    table = PushResult._meta.db_table
    job = uuid.UUID(str(job_id))  # a literal: COPY takes no parameters
    names = [f"c{index}" for index in range(len(_POSTGRESQL_CELLS))]
    # each cell computed once (OFFSET 0 keeps the inner SELECT whole), then made safe
    cells = ", ".join(
        f"{cell} AS {name}" for cell, name in zip(_POSTGRESQL_CELLS, names, strict=True)
    )
    statement = (
        f"COPY (SELECT {', '.join(_pg_cell(name) for name in names)} FROM ("
        f"SELECT received_at, id, {cells} FROM {table} WHERE job_id = '{job}'::uuid "
        "ORDER BY received_at, id OFFSET 0) AS cells ORDER BY received_at, id) TO STDOUT "
        "(FORMAT csv)"
    )
    connection.ensure_connection()
    buffer = bytearray()
    with connection.connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for data in copy:  # a row at a time: written out in blocks of whole rows
                buffer += data
                if len(buffer) >= COPY_BLOCK:
                    out.write(buffer.decode())
                    buffer.clear()
        out.write(buffer.decode())
        return int(cursor.rowcount)


class _Rows:
    """The text stream ``csv.writer`` writes to: each row ends in ``\n``. The writer is told
    rows end in ``\r\n``, so it quotes a cell holding a bare carriage return (as PostgreSQL
    does; told ``\n`` it left it bare, and readers split the row there), and each row's ending
    is turned back into ``\n`` here (the writer writes one row per call)."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, row: str) -> Any:
        return self.out.write(row[:-2] + "\n" if row.endswith("\r\n") else row)


def portable_writer(out: Any) -> Any:
    """A ``csv.writer`` writing to ``out`` as ``COPY`` does (rows end in ``\n``, ``_Rows``)."""
    return csv.writer(_Rows(out), lineterminator="\r\n")


def write_report_csv(*, job_id: Any, out: Any) -> int:
    """Write the CSV to the text stream ``out``, streaming the rows; return the row count."""
    writer = portable_writer(out)
    writer.writerow(HEADER)
    if connection.vendor == "postgresql":
        return _copy_postgresql(job_id, out)
    return _write_portable(job_id, writer)


def _write_portable(job_id: Any, writer: Any) -> int:
    """Write the job's rows with ``writer`` (a ``csv.writer``), in chunks; return how many."""
    rows = (
        PushResult.objects.filter(job_id=job_id)
        .order_by("received_at", "id")
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


class ClaimKept(Exception):
    """A build failed and its claim could not be given back (the database was away): the
    task's retry takes the claim over with ``held`` (its lease's end) instead of finding the
    report held until the lease ends (the task time limit and a minute) and doing nothing."""

    def __init__(self, held: datetime) -> None:
        super().__init__(f"the report's claim is kept until {held.isoformat()}")
        self.held = held


def report_build(
    *, job_id: Any, last_try: bool = False, held: datetime | None = None
) -> Report | None:
    """Build the job's CSV into storage, mark the report ready and fire ``jobs.report.ready``.

    Only a pending report is built, by one build at a time (``config.leases`` on
    ``locked_until``); a duplicate task, or one whose request was superseded by a newer one (a
    new request ends the lease), does nothing. A build that fails gives its claim back (the
    task's retry builds again at once); on the task's ``last_try`` it marks the report failed
    in the same statement, which finds nothing to change when a newer request took the report
    meanwhile (that request's build decides). A build that could not give its claim back raises
    ``ClaimKept``: the retry passes its ``held`` and takes the claim over.
    """
    claimed = leases.claim(
        Report.objects.filter(
            job_id=job_id, status=ReportStatus.PENDING, job__status__in=REPORTABLE_STATUSES
        ),
        duration=_build_lease(),
        limit=1,
        reclaim=held,
    )
    if not claimed.rows:
        logger.info("no pending report to build for job %s", job_id)
        return None
    # the row as the claim left it; from here on the claim is given back (or handed to the
    # retry) whatever fails, reading its job included
    report = claimed.rows[0]
    name = ""
    try:
        job = report.job
        # the push results this build covers: the job's count as read now, before the rows
        # (a result recorded after this read makes the report read pending until the next
        # build)
        covered = pushes_recorded(job)
        with tempfile.TemporaryFile(mode="w+b") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            rows = write_report_csv(job_id=job.pk, out=text)
            text.flush()
            text.detach()
            size = raw.seek(0, io.SEEK_END)
            raw.seek(0)
            # a name of this build's own: a storage that overwrites a name it holds
            # (django-storages' S3 default) would otherwise let a superseded build delete
            # the file of the build that won
            own = f"{job.pk}-{secrets.token_hex(8)}.csv"
            name = report.file.storage.save(
                f"reports/{timezone.now():%Y/%m}/{own}", File(raw, name=own)
            )
        superseded, old_name = _mark_ready(
            report, claimed.until, name=name, rows=rows, size=size, covered=covered
        )
    except BaseException as exc:
        failed = f"{type(exc).__name__}: {exc}" if last_try and isinstance(exc, Exception) else ""
        given_back = _give_back(report.pk, until=claimed.until, failed=failed)
        if name:  # saved, never recorded as the report's file
            _delete_quietly(report, name)
        if not given_back and isinstance(exc, Exception):
            raise ClaimKept(claimed.until) from exc
        raise
    if superseded:
        report.file.storage.delete(name)
        return None
    if old_name and old_name != name:
        report.file.storage.delete(old_name)
    return report


@transaction.atomic
def _mark_ready(
    report: Report, until: Any, *, name: str, rows: int, size: int, covered: int
) -> tuple[bool, str]:
    """Record the built file as the report's, if the build still holds it; (superseded, the
    previous file's name)."""
    mine = leases.held(
        Report.objects.filter(status=ReportStatus.PENDING), {report.pk: until}, lock=True
    )
    report.refresh_from_db()
    if report.pk not in mine:
        return True, ""  # a newer request (or a build that outlived its lease) owns it
    job = report.job
    old_name = str(report.file.name or "")
    report.file.name = name
    report.status = ReportStatus.READY
    report.row_count = rows
    report.push_count = covered
    report.size_bytes = size
    report.error = ""
    report.ready_at = timezone.now()
    report.locked_until = None
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
    return False, old_name


def _delete_quietly(report: Report, name: str) -> None:
    try:
        report.file.storage.delete(name)
    except Exception:
        logger.warning("report file %s of a failed build was not deleted", name, exc_info=True)


def _ready_payload(job: Job, report: Report) -> dict[str, Any]:
    job.refresh_from_db()  # the job as it is now (counts included: they live on the row)
    data = job_representation(job, report=report)
    data["report"].update(
        status=ReportStatus.READY.value,  # this file (a result recorded since: another build)
        rows=report.row_count,
        size_bytes=report.size_bytes,
        # valid while the webhook is retried, not only an API answer's hour
        url=download_url(report, ttl=webhook_link_ttl()),
    )
    return data


def reports_queue_pending(*, older_than_seconds: int = 60) -> int:
    """Queue builds for reports still pending after a while (their task was lost)."""
    from .tasks import build_job_report

    now = timezone.now()
    stale = Report.objects.filter(
        status=ReportStatus.PENDING, updated_at__lt=now - timedelta(seconds=older_than_seconds)
    ).filter(leases.free())
    job_ids = list(stale.values_list("job_id", flat=True)[:500])
    Report.objects.filter(job_id__in=job_ids).update(updated_at=now)  # once per interval
    for job_id in job_ids:
        build_job_report.apply_async((str(job_id),), retry=False)
    return len(job_ids)


def _give_back(report_id: Any, *, until: Any, failed: str = "") -> bool:
    """End a failed build's claim (``failed``: and mark the report failed with that error) if
    the build still holds it; False when the database could not be told. The build may have
    failed because its connection died (``COPY`` runs on the raw connection, so Django does not
    know): the release is tried on a new connection then, else the claim held the report until
    its lease ended (minutes) and the task's retry found nothing to build."""
    values: dict[str, Any] = {}
    if failed:
        values = {
            "status": ReportStatus.FAILED,
            "error": failed[:2000],
            "updated_at": timezone.now(),
        }
    for last in (False, True):
        try:
            leases.release(Report.objects.all(), [report_id], until=until, **values)
            return True
        except DATABASE_ERRORS:
            if last or connection.in_atomic_block:
                break
            connection.close()  # a new connection for the second try
        except Exception:  # never in place of the build's own error, which the caller raises
            break
    logger.warning(
        "report %s: its failed build's claim was not given back; the task's retry takes it "
        "over (else it is free again when its lease ends)",
        report_id,
        exc_info=True,
    )
    return False


# --- signed links -----------------------------------------------------------------------------


def report_from_token(token: str) -> Report:
    try:
        longest = webhook_link_ttl()  # no link lives longer
        claims = signing.loads(token, salt=SIGNING_SALT, max_age=longest)
        # the link's own lifetime: a webhook's carries it, an API answer's is the setting's
        ttl = min(int(claims.get("t") or settings.JOBTRAIL_REPORT_LINK_TTL), longest)
        if ttl < longest:
            signing.loads(token, salt=SIGNING_SALT, max_age=ttl)
    except signing.SignatureExpired as exc:
        raise LinkExpired from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
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
