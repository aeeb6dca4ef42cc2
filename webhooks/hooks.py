"""Hooks through which webhooks reaches other apps; webhooks imports none of them.

The jobs app registers its handlers when it is ready (``jobs.apps``). Webhooks' services call
``handoff_failed`` inside the transaction that records the outcome, so the outcome and what the
handler changes commit together; the batch sender calls ``relay_batch`` from its feeder thread
(``webhooks.sending``) to fan new events out while it holds a worker slot, and ``working`` from
its coordinator, so the ops app can record the worker's heartbeat while a round holds it.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# What stopped a hand-off without an HTTP answer (``HandoffFailure.error_kind``).
UNREACHABLE = "unreachable"  # no connection: refused, reset, DNS, TLS, SSRF guard, connect timeout
TIMEOUT = "timeout"  # connected, but no complete answer within JOBTRAIL_WEBHOOK_TIMEOUT
DISABLED = "disabled"  # the endpoint was disabled (a 410) before the hand-off was tried
NO_OUTCOME = "no_outcome"  # its attempts were used up, none recorded: the sender died each time


@dataclass(frozen=True)
class HandoffFailure:
    """A job's hand-off (``jobs.create`` to its company's integration endpoint) failed for good."""

    delivery_id: Any
    job_id: str  # the delivery's object_id
    attempts: int
    status_code: int | None
    error: str
    error_kind: str  # UNREACHABLE, TIMEOUT, DISABLED, NO_OUTCOME, or "" when it answered


HandoffFailed = Callable[[Sequence[HandoffFailure]], None]
_handoff_failed: list[HandoffFailed] = []


def on_handoff_failed(handler: HandoffFailed) -> HandoffFailed:
    """Register ``handler`` (once) to be called with every batch of final hand-off failures."""
    if handler not in _handoff_failed:
        _handoff_failed.append(handler)
    return handler


def handoff_failed(failures: Sequence[HandoffFailure]) -> None:
    """Tell the registered handlers, in the caller's transaction."""
    if not failures:
        return
    for handler in list(_handoff_failed):
        handler(failures)


RelayBatch = Callable[..., int]  # called with lane= (webhooks.lanes)
_relay_batch: list[RelayBatch] = []


def on_relay_batch(handler: RelayBatch) -> RelayBatch:
    """Register the job event relay's one-batch function (``jobs.relay.relay_batch``)."""
    if handler not in _relay_batch:
        _relay_batch.append(handler)
    return handler


def relay_batch(*, lane: str) -> int | None:
    """Relay one batch of new job events of ``lane`` now; how many, or None when no relay is
    registered."""
    return sum(handler(lane=lane) for handler in list(_relay_batch)) if _relay_batch else None


Working = Callable[..., None]  # called with lane= (webhooks.lanes)
_working: list[Working] = []


def on_working(handler: Working) -> Working:
    """Register ``handler`` (once) to hear that a sender round of a lane is at work (the ops app
    records the lane's worker heartbeat: a round holds its worker for up to a minute, during
    which the heartbeat task waits in the queue behind it)."""
    if handler not in _working:
        _working.append(handler)
    return handler


def working(*, lane: str) -> None:
    """A sender round of ``lane`` is at work now (its coordinator, every heartbeat interval)."""
    for handler in list(_working):
        handler(lane=lane)
