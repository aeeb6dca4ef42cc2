"""Hooks through which other apps hear of webhook outcomes; webhooks imports none of them.

The jobs app registers its handler when it is ready (``jobs.apps``): webhooks' services call
the hooks inside the transaction that records the outcome, so the outcome and what the
handler changes commit together.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# What stopped a hand-off without an HTTP answer (``HandoffFailure.error_kind``).
UNREACHABLE = "unreachable"  # no connection: refused, reset, DNS, TLS, SSRF guard, connect timeout
TIMEOUT = "timeout"  # connected, but no complete answer within JOBTRAIL_WEBHOOK_TIMEOUT
DISABLED = "disabled"  # the endpoint was disabled (a 410) before the hand-off was tried


@dataclass(frozen=True)
class HandoffFailure:
    """A job's hand-off (``jobs.create`` to its company's integration endpoint) failed for good."""

    delivery_id: Any
    job_id: str  # the delivery's object_id
    attempts: int
    status_code: int | None
    error: str
    error_kind: str  # UNREACHABLE, TIMEOUT, DISABLED, or "" when the receiver answered


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
