"""What the admin index shows: the last 24 hours by status, stuck jobs, failing endpoints,
trends over 24 h / 7 d / 30 d, and whether anything is moving (the page then refreshes itself).

Every figure is a fixed number of aggregate queries over a bounded time window, each served by
an index (``job_created`` for jobs by creation time, ``webhook_delivery_trend`` for deliveries):
the page's query count does not grow with the rows.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncDay, TruncHour
from django.urls import reverse
from django.utils import timezone

from reports.models import Report, ReportStatus
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

from .models import FailureReason, Job, JobEvent, JobStatus

STATUS_COLORS: dict[str, str] = {
    JobStatus.PENDING: "#8b95a1",
    JobStatus.PROCESSING: "#2f6fde",
    JobStatus.COMPLETED: "#1f9d55",
    JobStatus.COMPLETED_WITH_ERRORS: "#d98b00",
    JobStatus.FAILED: "#d64545",
}
CHART_HEIGHT = 120
BAR_WIDTH = 22
BAR_GAP = 6


def _job_list_url(**params: Any) -> str:
    return reverse("admin:jobs_job_changelist") + "?" + urlencode(params)


def _chart(now: datetime) -> dict[str, Any]:
    start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    rows = (
        Job.objects.filter(created_at__gte=start)
        # in UTC, as the buckets are (the staff user's zone truncates half-hour zones apart)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    buckets: dict[datetime, dict[str, int]] = {start + timedelta(hours=h): {} for h in range(24)}
    totals = dict.fromkeys(JobStatus.values, 0)
    for row in rows:
        hour = row["hour"]
        if hour in buckets:
            buckets[hour][row["status"]] = row["n"]
            totals[row["status"]] += row["n"]
    peak = max((sum(b.values()) for b in buckets.values()), default=0) or 1
    bars = []
    for index, (hour, counts) in enumerate(sorted(buckets.items())):
        y: float = CHART_HEIGHT
        segments = []
        for status in JobStatus.values:
            n = counts.get(status, 0)
            if not n:
                continue
            height = max(1.0, n / peak * CHART_HEIGHT)
            y -= height
            segments.append(
                {
                    "y": round(y, 1),
                    "height": round(height, 1),
                    "color": STATUS_COLORS[status],
                    "title": f"{hour:%H}:00 {status}: {n}",
                }
            )
        bars.append(
            {
                "x": index * (BAR_WIDTH + BAR_GAP),
                "label": f"{hour:%H}",
                "segments": segments,
                "total": sum(counts.values()),
            }
        )
    # with its offset: the list's filter reads a time without one in the staff user's zone
    since = start.isoformat(timespec="seconds")
    legend = [
        {
            "status": status,
            "color": STATUS_COLORS[status],
            "count": totals[status],
            "url": _job_list_url(status__exact=status, created_from=since),
        }
        for status in JobStatus.values
    ]
    return {
        "bars": bars,
        "legend": legend,
        "peak": peak,
        "width": 24 * (BAR_WIDTH + BAR_GAP),
        "height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "total": sum(totals.values()),
        "all_url": _job_list_url(created_from=since),
    }


def _stuck(now: datetime) -> dict[str, Any]:
    cutoff = now - timedelta(seconds=settings.JOBTRAIL_STUCK_AFTER)
    stuck = Job.objects.filter(status=JobStatus.PROCESSING, last_activity_at__lt=cutoff)
    return {
        "jobs": list(stuck.select_related("company").order_by("last_activity_at")[:10]),
        "count": stuck.count(),
        "after_minutes": settings.JOBTRAIL_STUCK_AFTER // 60,
        "url": _job_list_url(stuck="1"),
    }


def _failing_endpoints(now: datetime) -> list[dict[str, Any]]:
    since = now - timedelta(hours=24)
    stats = (
        WebhookDelivery.objects.filter(created_at__gte=since)
        .values("endpoint")
        .annotate(
            total=Count("id"),
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
            retrying=Count("id", filter=Q(status=DeliveryStatus.PENDING, attempts__gt=0)),
        )
        .filter(Q(failed__gt=0) | Q(retrying__gt=0))
        .order_by("-failed", "-retrying")[:10]
    )
    by_id = {row["endpoint"]: row for row in stats}
    endpoints = (
        WebhookEndpoint.objects.filter(Q(pk__in=by_id) | Q(is_active=False, updated_at__gte=since))
        .live()  # not one its company deleted
        .select_related("company")[:20]
    )
    failing = []
    for endpoint in endpoints:
        row = by_id.get(endpoint.pk, {"total": 0, "failed": 0, "retrying": 0})
        failing.append(
            {
                "endpoint": endpoint,
                "total": row["total"],
                "failed": row["failed"],
                "retrying": row["retrying"],
                # failed for good, or failing and being retried
                "rate": round(100 * (row["failed"] + row["retrying"]) / row["total"])
                if row["total"]
                else None,
                # the failed ones the row counts: created in the last 24 hours
                "url": reverse("admin:webhooks_webhookdelivery_changelist")
                + "?"
                + urlencode(
                    {
                        "endpoint__id__exact": endpoint.pk,
                        "status__exact": "failed",
                        "created_from": since.isoformat(timespec="seconds"),
                    }
                ),
            }
        )
    return sorted(failing, key=lambda f: (-f["failed"], -f["retrying"]))


# --- trends -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    buckets: int
    step: timedelta
    trunc: Any  # TruncHour or TruncDay: date_trunc on PostgreSQL, strftime on SQLite

    def start(self, now: datetime) -> datetime:
        now = now.astimezone(UTC)
        if self.step == timedelta(hours=1):
            current = now.replace(minute=0, second=0, microsecond=0)
        else:
            current = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return current - self.step * (self.buckets - 1)

    def label_of(self, bucket: datetime) -> str:
        return f"{bucket:%H}" if self.step == timedelta(hours=1) else f"{bucket:%d}"


WINDOWS: dict[str, Window] = {
    "24h": Window("24h", "24 hours", 24, timedelta(hours=1), TruncHour),
    "7d": Window("7d", "7 days", 7, timedelta(days=1), TruncDay),
    "30d": Window("30d", "30 days", 30, timedelta(days=1), TruncDay),
}
DEFAULT_WINDOW = "24h"
TREND_HEIGHT = 110
TREND_WIDTH = 696
ENDPOINTS_SHOWN = 12
ENDPOINT_BAR = 180
SERIES_WIDTH = 240  # an endpoint's chart: one bar per bucket
SERIES_HEIGHT = 28
DELIVERY_COLORS = {
    DeliveryStatus.DELIVERED: "#1f9d55",
    DeliveryStatus.PENDING: "#8b95a1",
    DeliveryStatus.FAILED: "#d64545",
}

# an outcome: a status, or "failed" with its reason (the API's code)
OUTCOME_COLORS: dict[str, str] = {
    JobStatus.COMPLETED: "#1f9d55",
    JobStatus.COMPLETED_WITH_ERRORS: "#d98b00",
    JobStatus.PROCESSING: "#2f6fde",
    JobStatus.PENDING: "#8b95a1",
}
REASON_COLORS = [
    "#d64545", "#9b2c8f", "#e0662b", "#7a3e9d", "#b83280", "#c53030", "#805ad5", "#dd6b20",
    "#97266d", "#e53e3e", "#6b46c1", "#c05621", "#702459", "#f56565", "#553c9a",
]  # fmt: skip
REASON_LABELS: dict[str, str] = {str(value): str(label) for value, label in FailureReason.choices}


def window_of(key: str | None) -> Window:
    return WINDOWS.get(key or "", WINDOWS[DEFAULT_WINDOW])


def _outcome_color(outcome: str) -> str:
    if outcome in OUTCOME_COLORS:
        return OUTCOME_COLORS[outcome]
    reasons = list(REASON_LABELS)
    reason = outcome.removeprefix("failed:")
    index = reasons.index(reason) if reason in reasons else len(reasons) - 1
    return REASON_COLORS[index % len(REASON_COLORS)]


def _job_trend(now: datetime, window: Window) -> dict[str, Any]:
    """Jobs created in the window, per bucket, by outcome (a failed job by its reason).

    One query: ``created_at >= start`` (index ``job_created``), grouped by the truncated
    creation time, status and failure reason: at most buckets x 19 rows, whatever the jobs.
    """
    start = window.start(now)
    rows = (
        Job.objects.filter(created_at__gte=start)
        .annotate(bucket=window.trunc("created_at", tzinfo=UTC))
        .values("bucket", "status", "failure_reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    buckets = [start + window.step * i for i in range(window.buckets)]
    counts: dict[datetime, dict[str, int]] = {b: {} for b in buckets}
    totals: dict[str, int] = {}
    for row in rows:
        bucket = row["bucket"]
        if bucket.tzinfo is None:
            bucket = bucket.replace(tzinfo=UTC)
        if bucket not in counts:
            continue
        outcome = (
            f"failed:{row['failure_reason']}"
            if row["status"] == JobStatus.FAILED
            else row["status"]
        )
        counts[bucket][outcome] = counts[bucket].get(outcome, 0) + row["n"]
        totals[outcome] = totals.get(outcome, 0) + row["n"]
    order = [
        JobStatus.COMPLETED,
        JobStatus.COMPLETED_WITH_ERRORS,
        *sorted((o for o in totals if o.startswith("failed:")), key=lambda o: -totals[o]),
        JobStatus.PROCESSING,
        JobStatus.PENDING,
    ]
    peak = max((sum(c.values()) for c in counts.values()), default=0) or 1
    slot = TREND_WIDTH / window.buckets
    bar_width = max(4.0, slot - 4)
    bars = []
    for index, bucket in enumerate(buckets):
        y: float = TREND_HEIGHT
        segments = []
        for outcome in order:
            n = counts[bucket].get(outcome, 0)
            if not n:
                continue
            height = max(1.0, n / peak * TREND_HEIGHT)
            y -= height
            segments.append(
                {
                    "y": round(y, 1),
                    "height": round(height, 1),
                    "color": _outcome_color(outcome),
                    "title": f"{bucket:%Y-%m-%d %H:%M} UTC {outcome.removeprefix('failed:')}: {n}",
                }
            )
        bars.append(
            {
                "x": round(index * slot, 1),
                "label": window.label_of(bucket),
                "label_x": round(bar_width / 2, 1),
                "segments": segments,
            }
        )
    # with its offset: the list's filter reads a time without one in the staff user's zone
    since = start.isoformat(timespec="seconds")
    finished = sum(
        n for o, n in totals.items() if o not in (JobStatus.PROCESSING, JobStatus.PENDING)
    )
    legend = []
    for outcome in order:
        n = totals.get(outcome, 0)
        if not n and outcome.startswith("failed:"):
            continue
        reason = outcome.removeprefix("failed:") if outcome.startswith("failed:") else ""
        params: dict[str, Any] = {"created_from": since}
        if reason:
            params.update(status__exact=JobStatus.FAILED, failure_reason__exact=reason)
        else:
            params["status__exact"] = outcome
        legend.append(
            {
                "outcome": reason or outcome,
                "is_reason": bool(reason),
                "title": REASON_LABELS.get(reason, reason) if reason else outcome.replace("_", " "),
                "color": _outcome_color(outcome),
                "count": n,
                "share": round(100 * n / finished)
                if finished and outcome not in (JobStatus.PROCESSING, JobStatus.PENDING)
                else None,
                "bar": round(ENDPOINT_BAR * n / max(totals.values()), 1) if n else 0,
                "url": _job_list_url(**params),
            }
        )
    return {
        "bars": bars,
        "bar_width": round(bar_width, 1),
        "width": TREND_WIDTH,
        "height": TREND_HEIGHT,
        "total": sum(totals.values()),
        "failed": sum(n for o, n in totals.items() if o.startswith("failed:")),
        "legend": legend,
        "reasons": [item for item in legend if item["is_reason"]],
    }


def _delivery_trend(now: datetime, window: Window) -> dict[str, Any]:
    """Deliveries created in the window per endpoint and bucket: delivered, pending, failed.

    Two queries: the counts, grouped by the truncated creation time (the job trend's buckets),
    endpoint and status (``created_at >= start``: index ``webhook_delivery_trend``, which
    carries the endpoint and status too, so the scan reads the index alone), then the
    endpoints shown. Each endpoint gets its totals and a small chart, one bar per bucket.
    """
    start = window.start(now)
    rows = (
        WebhookDelivery.objects.filter(created_at__gte=start)
        .annotate(bucket=window.trunc("created_at", tzinfo=UTC))
        .values("bucket", "endpoint", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    buckets = [start + window.step * i for i in range(window.buckets)]
    per: dict[Any, dict[str, int]] = {}
    series: dict[Any, dict[datetime, dict[str, int]]] = {}
    for row in rows:
        bucket = row["bucket"]
        if bucket.tzinfo is None:
            bucket = bucket.replace(tzinfo=UTC)
        counts = per.setdefault(row["endpoint"], {})
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        by_status = series.setdefault(row["endpoint"], {}).setdefault(bucket, {})
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]

    def badness(item: tuple[Any, dict[str, int]]) -> tuple[int, int]:
        counts = item[1]
        return (-counts.get(DeliveryStatus.FAILED, 0), -sum(counts.values()))

    shown = sorted(per.items(), key=badness)[:ENDPOINTS_SHOWN]
    endpoints = WebhookEndpoint.objects.select_related("company").in_bulk([pk for pk, _ in shown])
    delivery_list = reverse("admin:webhooks_webhookdelivery_changelist")
    # each endpoint's link lists what its row counts: its deliveries created in the window
    since = start.isoformat(timespec="seconds")
    result = []
    for pk, counts in shown:
        endpoint = endpoints.get(pk)
        if endpoint is None:
            continue
        delivered = counts.get(DeliveryStatus.DELIVERED, 0)
        failed = counts.get(DeliveryStatus.FAILED, 0)
        pending = counts.get(DeliveryStatus.PENDING, 0)
        total = delivered + failed + pending
        done = delivered + failed
        result.append(
            {
                "endpoint": endpoint,
                "delivered": delivered,
                "failed": failed,
                "pending": pending,
                "total": total,
                "success": round(100 * delivered / done) if done else None,
                "series": _endpoint_series(window, buckets, series.get(pk, {})),
                "url": delivery_list
                + "?"
                + urlencode({"endpoint__id__exact": endpoint.pk, "created_from": since}),
            }
        )
    return {
        "endpoints": result,
        "more": max(0, len(per) - len(shown)),
        "width": SERIES_WIDTH,
        "height": SERIES_HEIGHT,
    }


def _endpoint_series(
    window: Window, buckets: list[datetime], counts: dict[datetime, dict[str, int]]
) -> dict[str, Any]:
    """One endpoint's bars, one per bucket: delivered, pending and failed stacked (bottom up),
    scaled to the endpoint's busiest bucket; each bar's tooltip gives its success rate."""
    peak = max((sum(c.values()) for c in counts.values()), default=0) or 1
    slot = SERIES_WIDTH / window.buckets
    bar_width = max(2.0, slot - (2 if slot >= 6 else 1))
    bars = []
    for index, bucket in enumerate(buckets):
        by_status = counts.get(bucket, {})
        delivered = by_status.get(DeliveryStatus.DELIVERED, 0)
        pending = by_status.get(DeliveryStatus.PENDING, 0)
        failed = by_status.get(DeliveryStatus.FAILED, 0)
        done = delivered + failed
        success = round(100 * delivered / done) if done else None
        y: float = SERIES_HEIGHT
        segments = []
        for status, n in (
            (DeliveryStatus.DELIVERED, delivered),
            (DeliveryStatus.PENDING, pending),
            (DeliveryStatus.FAILED, failed),
        ):
            if not n:
                continue
            height = max(1.0, n / peak * SERIES_HEIGHT)
            y -= height
            segments.append(
                {"y": round(y, 1), "height": round(height, 1), "color": DELIVERY_COLORS[status]}
            )
        rate = f"{success} % success" if success is not None else "none finished"
        bars.append(
            {
                "x": round(index * slot, 1),
                "bucket": bucket.isoformat(),
                "delivered": delivered,
                "pending": pending,
                "failed": failed,
                "success": success,
                "segments": segments,
                "title": f"{bucket:%Y-%m-%d %H:%M} UTC: {delivered} delivered, "
                f"{pending} pending, {failed} failed ({rate})",
            }
        )
    return {"bars": bars, "bar_width": round(bar_width, 1)}


def trends_context(window_key: str | None = None, *, deliveries: bool = True) -> dict[str, Any]:
    """The trend charts; ``deliveries``: with the per-endpoint delivery trend (staff who may
    view deliveries: it names endpoints, their URLs and companies)."""
    now = timezone.now()
    window = window_of(window_key)
    return {
        "window": window,
        "windows": list(WINDOWS.values()),
        "jobs": _job_trend(now, window),
        "deliveries": _delivery_trend(now, window) if deliveries else None,
    }


# --- live: is anything moving? -----------------------------------------------------------------


MOVING_TEXT = {
    "jobs": "jobs are unfinished",
    "deliveries": "deliveries are due",
    "reports": "reports are being built",
    "events": "events wait for the relay",
}


def activity() -> dict[str, bool]:
    """What is moving now, each an index probe (``EXISTS``): the page polls while any is."""
    now = timezone.now()
    return {
        "jobs": Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.PROCESSING]).exists(),
        "deliveries": WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now + timedelta(minutes=1)
        ).exists(),
        "reports": Report.objects.filter(status=ReportStatus.PENDING).exists(),
        "events": JobEvent.objects.filter(relayed_at__isnull=True).exists(),
    }


def dashboard_context(window_key: str | None = None, *, deliveries: bool = True) -> dict[str, Any]:
    """The dashboard's figures; ``deliveries``: with the panels that name webhook endpoints
    (failing endpoints, delivery trend), for staff who may view deliveries."""
    now = timezone.now()
    moving = activity()
    return {
        "chart": _chart(now),
        "stuck": _stuck(now),
        "failing": _failing_endpoints(now) if deliveries else None,
        "trends": trends_context(window_key, deliveries=deliveries),
        "activity": moving,
        "live": any(moving.values()),
        "moving": ", ".join(MOVING_TEXT[name] for name, yes in moving.items() if yes),
        "refresh_seconds": settings.JOBTRAIL_ADMIN_REFRESH_SECONDS,
        "rendered_at": now,
    }
