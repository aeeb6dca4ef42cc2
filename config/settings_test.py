"""Settings for the test suite: production settings with a test secret and local webhook targets."""

import os
import sys

os.environ["JOBTRAIL_READ_DOTENV"] = "0"
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-not-secret"
)
os.environ.setdefault("JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")
# live servers in the tests (pytest-django's, gunicorn in tests/e2e) speak plain HTTP
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
# In-process tests see a wake-up published by the committing thread; the end-to-end stacks set
# the production default (tests/e2e/stack.py) so their processes coalesce as deployed.
os.environ.setdefault("JOBTRAIL_WAKEUP_WINDOW", "0")

# A pytest-xdist worker (gw0, gw1, …): it inherited the controller's environment, folders
# included, but keeps its own metrics, throwaway broker and Redis database (below), as the
# tests count what their own process and the processes they start did.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_own_process_state = _xdist_worker.startswith("gw") and "pytest" in sys.modules

if "PROMETHEUS_MULTIPROC_DIR" in os.environ and not _own_process_state:
    pass  # an e2e stack's process (the stack gives them their own folder), or set by hand
elif "pytest" not in sys.modules:
    # mypy's Django plugin and other tools load these settings too, and exit without running
    # atexit: no folder for them (the metrics stay in the process)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = ""
else:
    # this test run's metrics files, removed at exit by the process that made it
    import atexit
    import shutil
    import tempfile

    _metrics = tempfile.mkdtemp(prefix="jobtrail-test-metrics-")
    _metrics_owner = os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics

    def _remove_metrics_folder(path: str = _metrics, owner: int = _metrics_owner) -> None:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_remove_metrics_folder)

from .settings import *  # noqa: E402, F403
from .settings import CELERY_BROKER_URL  # noqa: E402 (named: reassigned below)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
# No staticfiles/ needed to run the tests: WhiteNoise finds the apps' static files through the
# finders (it only does by default with DEBUG on), so the e2e stack's gunicorn serves the
# console's CSS and scripts as the live_server does.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

if CELERY_BROKER_URL.startswith("filesystem://"):
    # Messages queued by tests (no worker reads them) go to a throwaway folder. The first
    # process makes it (its pid in the name) and hands it to its child processes through
    # JOBTRAIL_TEST_BROKER_DIR, so a child killed by a test leaves nothing of its own; the
    # maker removes it at exit, and any folder whose maker is gone (killed) is swept here.
    import atexit
    import glob
    import shutil
    import tempfile

    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    for _left in glob.glob(os.path.join(tempfile.gettempdir(), "jobtrail-test-broker-*")):
        _maker = os.path.basename(_left).split("-")[3]
        if not _maker.isdigit() or not _alive(int(_maker)):
            shutil.rmtree(_left, ignore_errors=True)

    _broker = os.environ.get("JOBTRAIL_TEST_BROKER_DIR", "")
    if not _broker or not os.path.isdir(_broker) or _own_process_state:
        _broker = tempfile.mkdtemp(prefix=f"jobtrail-test-broker-{os.getpid()}-")
        os.environ["JOBTRAIL_TEST_BROKER_DIR"] = _broker
        _broker_owner = os.getpid()

        def _remove_broker_folder(path: str = _broker, owner: int = _broker_owner) -> None:
            if os.getpid() == owner:
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(_remove_broker_folder)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        "data_folder_in": _broker,
        "data_folder_out": _broker,
        "control_folder": _broker,
    }

if _own_process_state:
    # Each pytest-xdist worker has its own test database (pytest-django adds the suffix) and
    # its own Redis database: the URL's number + 1 + the worker's (Redis has 16 by default),
    # so no worker's wake-ups sit in another's queue. The processes a test starts with this
    # environment use it too (no pytest in them: no second shift); a stack names its own.
    from urllib.parse import urlsplit as _urlsplit

    _url = _urlsplit(CELERY_BROKER_URL)
    if _url.scheme in ("redis", "rediss"):
        _db = int(_url.path.strip("/") or 0) + 1 + int(_xdist_worker[2:])
        if _db > 15:
            raise RuntimeError(
                f"pytest-xdist worker {_xdist_worker} would use Redis database {_db}: "
                "run fewer workers (TEST_WORKERS) or name a lower database in CELERY_BROKER_URL"
            )
        CELERY_BROKER_URL = _url._replace(path=f"/{_db}").geturl()
        os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
