"""gunicorn settings (``-c python:config.gunicorn``): metrics bookkeeping of the web workers.

The master never loads Django; it sets ``PROMETHEUS_MULTIPROC_DIR`` here, before anything
imports prometheus-client, so every worker it forks (and re-forks) writes its samples there.
"""

from typing import Any

from config import metrics_dir

metrics_dir.configure()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live gauges' files (its counters and histograms stay)."""
    from prometheus_client import multiprocess

    path = metrics_dir.configure()
    if path:
        multiprocess.mark_process_dead(worker.pid, path)
