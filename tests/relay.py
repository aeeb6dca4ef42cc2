"""Run the job event relay in the test process: what the worker does after a job change."""

from jobs.relay import events_relay


def run_relay() -> int:
    """Relay every waiting job event now (fan-out, report requests); return how many."""
    return events_relay(budget=None)
