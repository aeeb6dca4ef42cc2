"""``GET /metrics``: every process's counters and histograms plus the backlog gauges.

The gauges are read from the database by the process that answers the scrape, each from a
partial index that holds only the rows it counts (so the cost follows the backlog, not the
table: see README "Metrics" for the plans at a million rows).
"""

import logging
import os
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config.metrics_dir import ENV
from jobs.models import JobEvent
from reports.models import Report, ReportStatus
from webhooks.models import DeliveryStatus, WebhookDelivery

from .services import oldest_due_delivery

logger = logging.getLogger(__name__)


def backlogs() -> dict[str, Any]:
    """The backlog figures, four index probes (``DatabaseError`` when the database is down)."""
    now = timezone.now()
    oldest_due = oldest_due_delivery(now)
    return {
        # webhook_delivery_due (next_attempt_at) WHERE status = 'pending'
        "due": WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        ).count(),
        "oldest_due_age": 0.0 if oldest_due is None else (now - oldest_due).total_seconds(),
        # report_pending (updated_at) WHERE status = 'pending'
        "reports": Report.objects.filter(status=ReportStatus.PENDING).count(),
        # job_event_unrelayed (id) WHERE relayed_at IS NULL
        "unrelayed": JobEvent.objects.filter(relayed_at__isnull=True).count(),
    }


class BacklogCollector(Collector):
    """The backlog gauges, computed when scraped."""

    def collect(self) -> Iterator[Metric]:
        try:
            figures = backlogs()
        except DatabaseError:
            logger.warning("metrics: the backlog gauges are left out (database)", exc_info=True)
            yield GaugeMetricFamily(
                "jobtrail_backlog_up", "1 when the backlog gauges could be read.", value=0
            )
            return
        yield GaugeMetricFamily(
            "jobtrail_backlog_up", "1 when the backlog gauges could be read.", value=1
        )
        gauges = (
            ("jobtrail_webhook_deliveries_due", "Pending webhook deliveries whose attempt is due.",
             figures["due"]),
            ("jobtrail_webhook_oldest_due_delivery_age_seconds",
             "How long the longest-waiting due webhook delivery has been due (0: none).",
             max(figures["oldest_due_age"], 0.0)),
            ("jobtrail_reports_pending", "Reports requested and not built yet.",
             figures["reports"]),
            ("jobtrail_job_events_unrelayed",
             "Job events not yet relayed (turned into webhook deliveries and report builds).",
             figures["unrelayed"]),
        )  # fmt: skip
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)


def exposition() -> bytes:
    """The scrape's body: every process of this host (multiprocess mode), then the gauges."""
    if os.environ.get(ENV):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:  # multiprocess mode turned off: this process's own metrics
        processes = REGISTRY
    gauges = CollectorRegistry()
    gauges.register(BacklogCollector())
    return generate_latest(processes) + generate_latest(gauges)
