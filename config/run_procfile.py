"""`make run`: honcho runs the Procfile, and Ctrl-C stops every process gracefully.

On Ctrl-C honcho sends SIGTERM to each process group and SIGKILLs whatever still runs 5 seconds
after the first process exited: a constant that no option changes (nickstenning/honcho#189).
An idle Celery worker needs about that long for its warm shutdown, and a busy one waits for its
running tasks, so it was killed half-way. Give the processes the time a task in flight needs.

Links Jobtrail hands out point at the port the web runs on (``local_public_url``).

The processes share their Prometheus metrics in ``PROMETHEUS_MULTIPROC_DIR`` (default
``var/prometheus``), emptied here before they start (``config.metrics_dir``).
"""

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

import honcho.manager
from honcho.command import main

from config import metrics_dir

# Longer than a webhook send may take (JOBTRAIL_WEBHOOK_TIMEOUT, 15 s by default).
honcho.manager.KILL_WAIT = 30


def local_public_url(environ: MutableMapping[str, str], dotenv: Path) -> None:
    """Links Jobtrail hands out (report downloads, the ingest URL) point at the port the web
    runs on (``make run PORT=8001``), unless ``JOBTRAIL_PUBLIC_URL`` is set, in the
    environment or the ``.env``."""
    port = environ.get("JOBTRAIL_PORT")
    if not port or environ.get("JOBTRAIL_PUBLIC_URL"):
        return
    if dotenv.exists() and any(
        line.strip().startswith("JOBTRAIL_PUBLIC_URL=") for line in dotenv.read_text().splitlines()
    ):
        return
    environ["JOBTRAIL_PUBLIC_URL"] = f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    local_public_url(os.environ, Path(".env"))
    metrics_dir.reset()  # before any process starts: none writes there yet
    main(["start", "-f", "Procfile", *sys.argv[1:]])
