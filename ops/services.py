"""Heartbeats and the operations report behind ``GET /healthz/operations``."""

import logging
import socket
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from reports.models import Report, ReportStatus
from webhooks import lanes
from webhooks.models import DeliveryStatus, WebhookDelivery

from .models import Heartbeat

logger = logging.getLogger(__name__)

BEAT = "beat"
WORKER = "worker"
WIDE = "wide"  # the wide lane's worker (webhooks.lanes): the Procfile's `wide`
WIDE_HEARTBEAT_TASK = "ops.heartbeat.wide"
PROCESSES = (BEAT, WORKER, WIDE)


def heartbeat_record(*, name: str, hostname: str = "") -> None:
    """Record that the process ``name`` (``PROCESSES``) is alive now (one row per name)."""
    now = timezone.now()
    updated = Heartbeat.objects.filter(name=name).update(beat_at=now, hostname=hostname[:255])
    if not updated:
        Heartbeat.objects.get_or_create(
            name=name, defaults={"beat_at": now, "hostname": hostname[:255]}
        )


def lane_at_work(*, lane: str) -> None:
    """A sender round of ``lane`` is at work (``webhooks.hooks.working``): its worker is alive
    and taking work, though its heartbeat task may wait in the queue behind the round."""
    heartbeat_record(name=WIDE if lane == lanes.WIDE else WORKER, hostname=socket.gethostname())


def _age(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


def _heartbeats(
    now: datetime, rows: dict[str, Heartbeat], *, wide_needed: bool
) -> dict[str, dict[str, Any]]:
    """Each process's heartbeat; the wide lane's worker's only while it has a company to serve
    (``wide_needed``: otherwise it may idle, or not be deployed at all)."""
    limit = settings.JOBTRAIL_OPS_HEARTBEAT_MAX_AGE
    checks = {}
    for name in PROCESSES:
        row = rows.get(name)
        if name == WIDE and not wide_needed:
            continue
        age = _age(now, row.beat_at if row else None)
        status = "missing" if age is None else ("ok" if age <= limit else "stale")
        checks[name] = {
            "status": status,
            "last_seen_at": row.beat_at.isoformat() if row else None,
            "age_seconds": age,
            "limit_seconds": limit,
            "hostname": row.hostname if row else None,
        }
    return checks


def _seen(check: dict[str, Any]) -> str:
    if check["status"] == "missing":
        return "no heartbeat recorded yet"
    return f"last heartbeat {check['age_seconds']} s ago (limit {check['limit_seconds']} s)"


def _heartbeat_problems(checks: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    beat, worker, wide = checks[BEAT], checks[WORKER], checks.get(WIDE)
    if beat["status"] == "missing":
        problems.append("beat: no heartbeat recorded yet; is celery beat running?")
    elif beat["status"] == "stale":
        problems.append(
            f"beat: last heartbeat {beat['age_seconds']} s ago (limit {beat['limit_seconds']} s);"
            " celery beat is down or stuck"
        )
    cause = (
        "beat is alive, so the workers are stalled, down or far behind"
        if beat["status"] == "ok"
        else "beat is not queueing heartbeats either"
    )
    if worker["status"] != "ok":
        problems.append(f"worker: {_seen(worker)}; {cause}")
    if wide is not None and wide["status"] != "ok":
        problems.append(
            f"wide: {_seen(wide)}; {cause} (the wide lane's worker, `celery worker --queues "
            "wide`: the worker takes the work of companies with 50+ endpoints after "
            f"JOBTRAIL_WIDE_LANE_TAKEOVER, {settings.JOBTRAIL_WIDE_LANE_TAKEOVER:g} s)"
        )
    return problems


def _backlog(*, oldest: datetime | None, now: datetime, limit: int, key: str) -> dict[str, Any]:
    age = _age(now, oldest)
    return {
        "status": "ok" if age is None or age <= limit else "behind",
        key: age,
        "limit_seconds": limit,
    }


def oldest_due_delivery(now: datetime) -> datetime | None:
    """When the longest-waiting due webhook delivery became due (the partial index
    ``webhook_delivery_due`` answers it with one index probe)."""
    return (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )


def oldest_pending_report() -> datetime | None:
    """Since when the longest-waiting pending report has waited (index ``report_pending``)."""
    return (
        Report.objects.filter(status=ReportStatus.PENDING)
        .order_by("updated_at")
        .values_list("updated_at", flat=True)
        .first()
    )


def operations_report() -> tuple[bool, dict[str, Any]]:
    """Are beat and the workers alive and keeping up? Return ``(healthy, report)``."""
    now = timezone.now()
    body: dict[str, Any] = {"status": "ok", "checked_at": now.isoformat(), "problems": []}
    try:
        rows = {row.name: row for row in Heartbeat.objects.filter(name__in=PROCESSES)}
        wide_needed = lanes.wide_lane_needed()
        due = oldest_due_delivery(now)
        pending = oldest_pending_report()
    except DatabaseError:
        logger.warning("operations check: the database is unreachable", exc_info=True)
        body.update(status="degraded", problems=["database: unreachable"], checks={})
        return False, body

    checks = _heartbeats(now, rows, wide_needed=wide_needed)
    problems = _heartbeat_problems(checks)
    backlogs = (
        ("webhook_deliveries", due, settings.JOBTRAIL_OPS_MAX_DELIVERY_LAG,
         "oldest_due_age_seconds", "the oldest due delivery"),
        ("reports", pending, settings.JOBTRAIL_OPS_MAX_REPORT_LAG,
         "oldest_pending_age_seconds", "the oldest pending report"),
    )  # fmt: skip
    for name, oldest, limit, key, what in backlogs:
        checks[name] = _backlog(oldest=oldest, now=now, limit=limit, key=key)
        if checks[name]["status"] != "ok":
            problems.append(f"{name}: {what} has waited {checks[name][key]} s (limit {limit} s)")
    body.update(status="degraded" if problems else "ok", problems=problems, checks=checks)
    return not problems, body


# --- the staff console's operations panel -----------------------------------------------------

BACKLOG_COUNT_CAP = 10_000  # counts stop here ("10000+"): each count stays an index range scan
BROKER_CHECK_TIMEOUT = 1  # seconds for one connection attempt to the broker
BROKER_CHECK_CACHE = 5.0  # seconds a broker check's answer is reused across page refreshes

_broker_checked: dict[str, dict[str, Any]] = {}  # broker URL ("" configured) -> last answer


def _capped_count(queryset: Any) -> tuple[int, bool]:
    """How many rows, stopping at ``BACKLOG_COUNT_CAP`` (and whether it stopped there)."""
    count = queryset.order_by().values("pk")[: BACKLOG_COUNT_CAP + 1].count()
    return min(count, BACKLOG_COUNT_CAP), count > BACKLOG_COUNT_CAP


def broker_check(*, now: float | None = None, url: str | None = None) -> dict[str, Any]:
    """Can this process connect to the Celery broker? One short attempt, cached a few seconds.

    The answer (``ok``, ``error`` with the exception's text, ``checked_at``, ``cached``) is kept
    per process and broker URL (``url``: the configured broker unless given) for
    ``BROKER_CHECK_CACHE`` seconds, so a page refreshing every few seconds does not open a
    connection each time.
    """
    import time

    from config.celery_app import app as celery_app

    clock = time.monotonic() if now is None else now
    cached = _broker_checked.get(url or "")
    if cached and 0 <= clock - cached["at"] < BROKER_CHECK_CACHE:
        return {**cached["result"], "cached": True}
    started = time.monotonic()
    try:
        with celery_app.connection_for_write(url) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_CHECK_TIMEOUT)
        result: dict[str, Any] = {"ok": True, "error": ""}
    except Exception as exc:  # any failure to connect is the answer, not an error of the page
        logger.warning("operations panel: the broker is unreachable: %s", exc)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["checked_at"] = timezone.now()
    result["took_ms"] = round((time.monotonic() - started) * 1000)
    _broker_checked[url or ""] = {"at": clock, "result": result}
    return {**result, "cached": False}


def operations_panel() -> dict[str, Any]:
    """What the console's operations panel shows: heartbeats, backlog, the broker.

    A fixed number of queries, each answered by an index: the heartbeat rows; the oldest due
    delivery and the due count (``webhook_delivery_due``); the pending reports
    (``report_pending``); the events the relay has not fanned out yet (``job_event_unrelayed``).
    Counts are capped at ``BACKLOG_COUNT_CAP``.
    """
    from jobs.models import JobEvent

    now = timezone.now()
    rows = {row.name: row for row in Heartbeat.objects.filter(name__in=PROCESSES)}
    checks = _heartbeats(now, rows, wide_needed=lanes.wide_lane_needed())
    heartbeats = [
        {
            "name": name,
            "status": checks[name]["status"],
            "seen_at": rows[name].beat_at if name in rows else None,
            "age_seconds": checks[name]["age_seconds"],
            "limit_seconds": checks[name]["limit_seconds"],
            "hostname": checks[name]["hostname"] or "",
        }
        for name in PROCESSES
        if name in checks
    ]
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    due_count, due_more = _capped_count(due)
    oldest_due = oldest_due_delivery(now)
    reports = Report.objects.filter(status=ReportStatus.PENDING)
    reports_count, reports_more = _capped_count(reports)
    oldest_report = oldest_pending_report()
    unrelayed = JobEvent.objects.filter(relayed_at__isnull=True)
    unrelayed_count, unrelayed_more = _capped_count(unrelayed)
    oldest_unrelayed = (
        unrelayed.order_by("id").values_list("created_at", flat=True).first()
        if unrelayed_count
        else None
    )
    delivery_lag = _age(now, oldest_due)
    report_lag = _age(now, oldest_report)
    return {
        "checked_at": now,
        "heartbeats": heartbeats,
        "backlog": {
            "due_deliveries": due_count,
            "due_deliveries_more": due_more,
            "oldest_due_at": oldest_due,
            "oldest_due_age_seconds": delivery_lag,
            "delivery_behind": delivery_lag is not None
            and delivery_lag > settings.JOBTRAIL_OPS_MAX_DELIVERY_LAG,
            "pending_reports": reports_count,
            "pending_reports_more": reports_more,
            "oldest_report_at": oldest_report,
            "oldest_report_age_seconds": report_lag,
            "report_behind": report_lag is not None
            and report_lag > settings.JOBTRAIL_OPS_MAX_REPORT_LAG,
            "unrelayed_events": unrelayed_count,
            "unrelayed_events_more": unrelayed_more,
            "oldest_unrelayed_at": oldest_unrelayed,
        },
        "broker": broker_check(),
    }
