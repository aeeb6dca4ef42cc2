"""`make run`: honcho runs the Procfile, and Ctrl-C stops every process gracefully.

On Ctrl-C honcho sends SIGTERM to each process group and SIGKILLs whatever still runs 5 seconds
after the first process exited: a constant that no option changes (nickstenning/honcho#189).
An idle Celery worker needs about that long for its warm shutdown, and a busy one waits for its
running tasks, so it was killed half-way. Give the processes the time a task in flight needs.

The processes share their Prometheus metrics in ``PROMETHEUS_MULTIPROC_DIR`` (default
``var/prometheus``), emptied here before they start (``config.metrics_dir``).
"""

import sys

import honcho.manager
from honcho.command import main

from config import metrics_dir

# Longer than a webhook send may take (JOBTRAIL_WEBHOOK_TIMEOUT, 15 s by default).
honcho.manager.KILL_WAIT = 30

if __name__ == "__main__":
    metrics_dir.reset()  # before any process starts: none writes there yet
    main(["start", "-f", "Procfile", *sys.argv[1:]])
