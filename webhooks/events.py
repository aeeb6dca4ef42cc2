"""The catalogue of webhook event ids and how endpoint patterns match them."""

from django.conf import settings

EVENT_TYPES: dict[str, str] = {
    "jobs.create": "A job was created.",
    "jobs.update": "A job's progress changed (counts, message or metadata).",
    "jobs.started": "A job started processing.",
    "jobs.completed": "A job completed.",
    "jobs.completed_with_errors": "A job completed, but some records failed.",
    "jobs.failed": "A job failed (with its failure_reason: canceled, expired, …).",
    "jobs.push_results.create": "A push result was recorded for a job.",
    "jobs.report.ready": "A finished job's CSV report is ready to download.",
}


# The event whose delivery to the integration endpoint hands a new job to the integration.
HANDOFF_EVENT = "jobs.create"


def pattern_matches(pattern: str, events_id: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return events_id.startswith(pattern[:-1])
    return pattern == events_id


def subscribed(patterns: object, events_id: str) -> bool:
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and pattern_matches(p, events_id) for p in patterns)


def invalid_patterns(patterns: list[str]) -> list[str]:
    """The patterns that match no known event id."""
    return [p for p in patterns if not any(pattern_matches(p, e) for e in EVENT_TYPES)]


def patterns_problem(patterns: list[str]) -> str | None:
    """Why ``patterns`` cannot subscribe an endpoint (API and admin say the same), or None."""
    limit = settings.JOBTRAIL_MAX_ENDPOINT_EVENTS
    if len(set(patterns)) > limit:
        return (
            f"At most {limit} event ids or patterns per endpoint (JOBTRAIL_MAX_ENDPOINT_EVENTS); "
            "use a pattern like 'jobs.*' to match several."
        )
    bad = invalid_patterns(patterns)
    if not bad:
        return None
    return (
        f"Unknown event id or pattern: {', '.join(bad)}. Use ids from "
        "/api/v1/webhook-event-types/, a prefix pattern like 'jobs.*', or '*'."
    )
