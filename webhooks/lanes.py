"""Lanes: the webhook work of companies that fan out wide is done by a worker of its own.

A company with ``WIDE_FAN_OUT`` active endpoints or more turns each job event into that many
deliveries: 1,000 endpoints make one job change 1,000 HTTP sends. Done by the same worker as
every other company's, under the same CPU priority, that burst delays the others' webhooks and,
through the shared cores, their API requests. So the work is split in two lanes:

- the *wide* lane: those companies' event relay and delivery sends, by the Procfile's ``wide``
  worker (the Celery queue ``wide``), which runs under ``SCHED_IDLE``
  (``JOBTRAIL_WIDE_LANE_CPU``): it gets the cycles nobody else wants;
- the *narrow* lane: everything else, by the Procfile's ``worker`` (the default queue).

Each lane's claims filter by company (``claim_filter``); its wake-ups are tasks of their own
(``task``: ``jobs.relay_events.wide``, ``webhooks.send_due_deliveries.wide``), routed to the
lane's queue (``CELERY_TASK_ROUTES``), each with its own outstanding wake-up row. The web wakes
the narrow relay as before; the narrow relay wakes the wide one when a wide company's event
waits (``jobs.relay.events_relay``), and the beat's sweeps look at both lanes.

Nothing is stranded when the wide worker is down, stuck or too slow: the narrow lane also takes
a wide company's work once it has waited ``JOBTRAIL_WIDE_LANE_TAKEOVER`` seconds (an event
since it was logged, a delivery since it came due). Which companies are wide is read at most
every ``REFRESH`` seconds per process. Two processes may disagree for those seconds: when a
company has just stopped being wide, both lanes leave its new work alone and the takeover picks
it up; when it has just become wide, both may claim it (the claims' row locks and leases keep
each row to one of them). ``JOBTRAIL_WIDE_LANE=false`` turns
the lanes off: the narrow lane is the only one, as before.
"""

import threading
import time
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from .models import WebhookEndpoint

NARROW = "narrow"
WIDE = "wide"
LANES = (NARROW, WIDE)
# The Celery queue of the wide lane's tasks (the default queue is the narrow lane's).
QUEUE = "wide"
# A company with at least this many active endpoints fans out wide.
WIDE_FAN_OUT = 50
# Which companies are wide is read again after this many seconds (per process).
REFRESH = 5.0


def enabled() -> bool:
    return bool(settings.JOBTRAIL_WIDE_LANE)


def task(name: str, lane: str) -> str:
    """The name of the wake-up task ``name`` in ``lane``."""
    return name if lane == NARROW else f"{name}.{lane}"


def _fanning_out_wide(company_ids: Collection[Any] | None = None) -> Any:
    """The ids of the companies (among ``company_ids``, if given) with ``WIDE_FAN_OUT`` active
    endpoints or more, as a query."""
    endpoints = WebhookEndpoint.objects.live().filter(is_active=True)
    if company_ids is not None:
        endpoints = endpoints.filter(company_id__in=list(company_ids))
    return (
        endpoints.values("company_id")
        .annotate(endpoints=Count("id"))
        .filter(endpoints__gte=WIDE_FAN_OUT)
        .values_list("company_id", flat=True)
    )


def companies_fanning_out_wide(company_ids: Collection[Any] | None = None) -> set[Any]:
    """The companies (among ``company_ids``, if given) with ``WIDE_FAN_OUT`` active endpoints
    or more; read now."""
    return set(_fanning_out_wide(company_ids))


def wide_lane_needed() -> bool:
    """Whether the wide lane has a company to serve; read now, one query (its worker's
    heartbeat matters only then: ``ops.services``)."""
    return enabled() and _fanning_out_wide().exists()


class _Wide:
    """The companies that fan out wide, read at most every ``REFRESH`` seconds; per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._companies: frozenset[Any] = frozenset()
        self._read_at: float | None = None

    def companies(self) -> frozenset[Any]:
        now = time.monotonic()
        with self._lock:
            if self._read_at is not None and now - self._read_at < REFRESH:
                return self._companies
        companies = frozenset(companies_fanning_out_wide())
        with self._lock:
            self._companies, self._read_at = companies, now
        return companies

    def forget(self) -> None:
        with self._lock:
            self._companies, self._read_at = frozenset(), None


_wide = _Wide()


def wide_companies() -> frozenset[Any]:
    """The companies whose work is the wide lane's (none while the lanes are off)."""
    return _wide.companies() if enabled() else frozenset()


def forget() -> None:
    """Read the wide companies again on next use (the tests, between two tests' companies)."""
    _wide.forget()


def lane_of(company_id: Any) -> str:
    return WIDE if company_id in wide_companies() else NARROW


def claims_nothing(lane: str | None) -> bool:
    """Whether ``lane`` has nothing to claim whatever waits: the wide lane while no company is
    wide (its claims are not even asked)."""
    return lane == WIDE and not wide_companies()


def takeover_cutoff() -> Any:
    """Work of the wide lane that has waited since before this is the narrow lane's too."""
    return timezone.now() - timedelta(seconds=float(settings.JOBTRAIL_WIDE_LANE_TAKEOVER))


def claim_filter(lane: str | None, *, company: str, waiting_since: str) -> Q | None:
    """What ``lane`` may claim, as a filter on the rows' ``company`` and the field that says
    since when a row waits (``waiting_since``); None: everything (``lane`` None, or the narrow
    lane while no company is wide)."""
    if lane is None:
        return None
    wide = sorted(wide_companies())
    if lane == WIDE:
        # none wide: a condition no row meets (an empty IN would make Django refuse to compile
        # the claim's statement; claims_nothing spares the query, read a moment earlier)
        return Q(**{f"{company}__in": wide}) if wide else Q(pk__isnull=True)
    if not wide:
        return None
    return ~Q(**{f"{company}__in": wide}) | Q(**{f"{waiting_since}__lte": takeover_cutoff()})
