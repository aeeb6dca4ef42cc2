"""Publish after commit, fall back to the sweep: the one way work is handed to the worker.

The database rows are the truth (the job event log, deliveries, pending reports); a broker
message only says "there is work". So a message is sent after the transaction that wrote the
rows commits (never inside it), at most once per task and arguments per transaction, and a
failed publish is logged, not raised: a beat sweep finds the rows and wakes the worker again.
"""

import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

logger = logging.getLogger(__name__)

# After a failed publish, skip the broker for a few seconds: requests stay fast during an
# outage (no connection attempt each), and the sweeps publish once the broker is back.
BROKER_BACKOFF = 5.0
_broker_down_until = 0.0


def publish(task_name: str, args: Sequence[Any] = ()) -> bool:
    """Send one message for ``task_name`` now; False (logged) when the broker refuses it."""
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        logger.info("broker presumed down: %s not published; the sweep will wake it", task_name)
        return False
    from config.celery_app import app

    try:
        app.send_task(task_name, args=list(args), retry=False)
    except Exception as exc:
        logger.warning("%s not published (%s); the sweep will wake it", task_name, exc)
        _broker_down_until = time.monotonic() + BROKER_BACKOFF
        return False
    return True


class _Publish:
    """An on-commit callback that knows what it publishes (so a second request can find it)."""

    def __init__(self, task_name: str, args: tuple[Any, ...]) -> None:
        self.key = (task_name, args)

    def __call__(self) -> None:
        publish(*self.key)


def publish_on_commit(
    task_name: str, args: Sequence[Any] = (), *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Publish ``task_name`` once the current transaction commits; once per transaction.

    Nothing is sent if the transaction rolls back. Outside a transaction it is sent at once.
    """
    key = (task_name, tuple(args))
    connection = connections[using]
    if connection.in_atomic_block:
        # Django drops the callbacks of a rolled-back savepoint from this list, so a callback
        # found here will run: a second one for the same message would be a duplicate.
        for entry in connection.run_on_commit:  # (savepoint ids, callback, robust)
            callback = entry[1]
            if isinstance(callback, _Publish) and callback.key == key:
                return
    transaction.on_commit(_Publish(*key), using=using, robust=True)
