"""The Prometheus metrics every process records (``GET /metrics`` adds all processes up).

Only counters and histograms live here, observed in memory-mapped files (multiprocess mode,
``config.metrics_dir``): an observation is a few microseconds and never a query. The backlog
gauges are computed by the scraping process from the database (``ops.metrics``).

Job changes and delivery outcomes are observed after the transaction that makes them commits,
so a rolled-back change is never counted and a committed one is counted once.
"""

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

JOB_CHANGES = Counter(
    "jobtrail_job_changes",
    "Job timeline events relayed, by the status they record and the failure reason (failed only).",
    ["status", "failure_reason"],
)
HTTP_REQUEST_DURATION = Histogram(
    "jobtrail_http_request_duration_seconds",
    "Time Django took to answer a request, by route template, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOK_DELIVERIES = Counter(
    "jobtrail_webhook_deliveries",
    "Webhook delivery attempts by the delivery's state after them: delivered, retrying, failed;"
    " abandoned: failed without an attempt (endpoint disabled).",
    ["outcome"],
)
WEBHOOK_FIRST_ATTEMPT_DELAY = Histogram(
    "jobtrail_webhook_first_attempt_delay_seconds",
    "From the commit of a job change to the start of the first attempt at one of its webhooks.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "jobtrail_webhook_attempt_duration_seconds",
    "How long one webhook attempt's HTTP exchange took (connect to answer, or to the error).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0),
)

OUTCOME_DELIVERED = "delivered"
OUTCOME_RETRYING = "retrying"
OUTCOME_FAILED = "failed"
OUTCOME_ABANDONED = "abandoned"


def job_changes_observe(changes: Iterable[tuple[str, str]]) -> None:
    """Count relayed timeline events, each a ``(status, failure_reason)``."""
    for status, failure_reason in changes:
        JOB_CHANGES.labels(status=status, failure_reason=failure_reason).inc()


def _event_time(payload: Any) -> datetime | None:
    """When the job change of a delivery's payload committed (``event.dt``), if it says."""
    try:
        return datetime.fromisoformat(payload["event"]["dt"])
    except (KeyError, TypeError, ValueError):
        return None


class AttemptObservation:
    """What one recorded attempt tells the metrics (built in the recording transaction)."""

    __slots__ = ("duration_ms", "first", "outcome", "payload", "started_at")

    def __init__(
        self, *, duration_ms: int, outcome: str, first: bool, payload: Any, started_at: datetime
    ) -> None:
        self.duration_ms = duration_ms
        self.outcome = outcome  # "" when another sender owns the delivery now
        self.first = first  # the first scheduled attempt
        self.payload = payload
        self.started_at = started_at


def attempts_observe(attempts: Iterable[AttemptObservation]) -> None:
    """Observe recorded attempts: duration, the delivery's outcome, the first one's delay."""
    for observation in attempts:
        WEBHOOK_ATTEMPT_DURATION.observe(observation.duration_ms / 1000)
        if observation.outcome:
            WEBHOOK_DELIVERIES.labels(outcome=observation.outcome).inc()
        if observation.first:
            committed = _event_time(observation.payload)
            if committed is not None:
                delay = (observation.started_at - committed).total_seconds()
                WEBHOOK_FIRST_ATTEMPT_DELAY.observe(max(delay, 0.0))


def deliveries_abandoned_observe(count: int) -> None:
    if count:
        WEBHOOK_DELIVERIES.labels(outcome=OUTCOME_ABANDONED).inc(count)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"


class RequestMetricsMiddleware:
    """Observe each request's duration under its URL pattern (``/api/v1/jobs/<uuid_ci:job_id>/``),
    never its path: the label values stay as few as the URL patterns."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = request.resolver_match
        route = "/" + str(match.route) if match is not None and match.route else UNMATCHED
        method = request.method if request.method in KNOWN_METHODS else "other"
        key = (route, method, response.status_code // 100)
        child = _request_children.get(key)
        if child is None:  # labels() validates and locks: once per key, not per request
            child = HTTP_REQUEST_DURATION.labels(route=route, method=method, status=f"{key[2]}xx")
            _request_children[key] = child
        child.observe(elapsed)
        return response


# (route, method, status class) -> the histogram's child; as many keys as URL patterns allow
_request_children: dict[tuple[str, str, int], Any] = {}
