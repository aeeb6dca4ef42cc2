"""What the admin index shows: the last 24 hours by status, stuck jobs, failing endpoints."""

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone

from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

from .models import Job, JobStatus

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
        .annotate(hour=TruncHour("created_at"))
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
    endpoints = WebhookEndpoint.objects.filter(
        Q(pk__in=by_id) | Q(is_active=False, updated_at__gte=since)
    ).select_related("company")[:20]
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
                "url": reverse("admin:webhooks_webhookdelivery_changelist")
                + "?"
                + urlencode({"endpoint__id__exact": endpoint.pk, "status__exact": "failed"}),
            }
        )
    return sorted(failing, key=lambda f: (-f["failed"], -f["retrying"]))


def dashboard_context() -> dict[str, Any]:
    now = timezone.now()
    return {"chart": _chart(now), "stuck": _stuck(now), "failing": _failing_endpoints(now)}
