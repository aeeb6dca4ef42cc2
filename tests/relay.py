"""Run the job event relay in the test process: what the worker does after a job change."""

from jobs.relay import events_relay
from webhooks import lanes


def run_relay() -> int:
    """Relay every waiting job event now (fan-out, report requests), the narrow lane's then the
    wide lane's (``webhooks.lanes``); return how many."""
    return sum(events_relay(budget=None, lane=lane) for lane in lanes.LANES)
