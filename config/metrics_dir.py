"""Where the processes of one host share their Prometheus metrics (no Django, no prometheus_client).

The web workers, the Celery worker (and its pool processes) and beat are separate processes;
prometheus-client's multiprocess mode has each write its samples to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR``, and ``GET /metrics`` (any web worker) adds them all up. The
client picks its mode when it is first imported, so the variable must be set before that:
``config.settings`` calls ``configure()`` first thing in every Django process, and the
gunicorn master (``config.gunicorn``), which never loads the settings, does too.

The folder must start empty when the whole set of processes starts (files of an earlier run
would add their old counts): ``make run`` clears it (``config.run_procfile``); the systemd units
use a runtime folder that a reboot clears. It is never cleared while processes run: a process
writing to a deleted file would vanish from the scrape.
"""

import os
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONFIG_DIR = Path(__file__).resolve().parent
# as in config.settings: the source tree's var/, or the working directory's for an installed package
BASE_DIR = CONFIG_DIR.parent if (CONFIG_DIR.parent / "manage.py").is_file() else Path.cwd()
DEFAULT = BASE_DIR / "var" / "prometheus"


_configured: str | None = None


def configure() -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` (default ``var/prometheus``) and create the folder.

    Return it. An empty value set on purpose turns multiprocess mode off: each process then
    shows only its own metrics (the variable is removed, since prometheus-client goes by its
    presence).
    """
    global _configured
    if _configured is None:
        path = os.environ.setdefault(ENV, str(DEFAULT))
        if path:
            Path(path).mkdir(parents=True, exist_ok=True)
        else:
            del os.environ[ENV]
        _configured = path
    return _configured


def reset() -> str:
    """Empty the folder before the processes start (``make run``); return it."""
    path = configure()
    if path:
        for entry in Path(path).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return path
