"""The platform side of seed 000: a hand-off that fails for good fails its pending job.

A new job is handed to its company's integration by the ``jobs.create`` webhook to the
company's integration endpoint (``webhooks.models.EndpointRole``). When that delivery fails
for good (``webhooks.services``: its schedule is used up, or 401/403 came back
``JOBTRAIL_HANDOFF_AUTH_ATTEMPTS`` times) and the job is still ``pending``, the job fails with
the seed's reason for it, as a ``system`` event saying what happened; ``jobs.failed`` follows
from the relay as for any failure. Registered with ``webhooks.hooks`` when the app is ready, and
called in the transaction that records the delivery's outcome.
"""

from collections.abc import Sequence

from webhooks import hooks

from .models import FailureReason
from .services import job_fail_if_pending

# An answer that refuses our credentials.
AUTH_REFUSED = frozenset({401, 403})
# Answers of a gateway in front of the integration: it could not reach it, or not in time.
GATEWAY_UNREACHABLE = frozenset({502, 503})
GATEWAY_TIMEOUT = frozenset({504})
ERROR_SHOWN = 500  # characters of a network error quoted on the timeline


def failure_reason(failure: hooks.HandoffFailure) -> FailureReason:
    """The seed 000 reason for a hand-off that failed for good.

    401/403 → ``authentication_failure``; no connection (refused, reset, DNS, TLS, a connect
    timeout) → ``service_unreachable``; connected but no complete answer in time →
    ``service_timeout``. Gateways: 502/503 → ``service_unreachable``, 504 → ``service_timeout``.
    Any other answer (another 4xx or 5xx, a redirect, 410) and an endpoint disabled before the
    hand-off was tried → ``integration_unusable``. Attempts used up with no outcome recorded
    (the worker sending them died each time: ``hooks.NO_OUTCOME``) → ``service_unreachable``.
    """
    code = failure.status_code
    if code in AUTH_REFUSED:
        return FailureReason.AUTHENTICATION_FAILURE
    if code in GATEWAY_UNREACHABLE:
        return FailureReason.SERVICE_UNREACHABLE
    if code in GATEWAY_TIMEOUT:
        return FailureReason.SERVICE_TIMEOUT
    if code is not None or failure.error_kind == hooks.DISABLED:
        return FailureReason.INTEGRATION_UNUSABLE
    if failure.error_kind == hooks.TIMEOUT:
        return FailureReason.SERVICE_TIMEOUT
    return FailureReason.SERVICE_UNREACHABLE


def failure_message(failure: hooks.HandoffFailure) -> str:
    """What happened, for the timeline: the answer or the error, and the attempts made."""
    attempts = f"{failure.attempts} attempt{'' if failure.attempts == 1 else 's'}"
    if failure.status_code is not None:
        what = f"the integration endpoint answered HTTP {failure.status_code}"
    elif failure.error_kind == hooks.DISABLED:
        what = failure.error or "the integration endpoint is disabled"
    else:
        error = failure.error or "no answer"
        what = error if len(error) <= ERROR_SHOWN else error[: ERROR_SHOWN - 1] + "…"
    return f"The hand-off to the integration (jobs.create) failed after {attempts}: {what}"


def fail_pending_jobs(failures: Sequence[hooks.HandoffFailure]) -> None:
    """Fail each still-pending job of ``failures`` with the seed's reason (job id order)."""
    for failure in sorted(failures, key=lambda f: f.job_id):
        job_fail_if_pending(
            job_id=failure.job_id,
            failure_reason=failure_reason(failure),
            message=failure_message(failure),
        )
