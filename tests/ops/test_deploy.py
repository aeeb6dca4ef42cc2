"""The shipped systemd units and env example, and the broker settings the README promises."""

import configparser
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from gunicorn.app.base import Application
from gunicorn.config import Config

from reports.tasks import build_job_report
from webhooks import lanes

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
BIN = Path(sys.executable).parent
VENV_BIN = "/srv/jobtrail/.venv/bin/"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    return parser["Service"]


def exec_start(service: configparser.SectionProxy) -> list[str]:
    # systemd turns %% into %; the program and its entry point are in the project's venv
    argv = shlex.split(service["ExecStart"].replace("%%", "%"))
    assert argv[0].startswith(VENV_BIN), argv[0]
    assert (BIN / argv[0].removeprefix(VENV_BIN)).is_file(), f"no {argv[0]} in the venv"
    return argv


def celery_accepts(argv: list[str]) -> None:
    """Celery parses the options and loads the app (-A) before --help; bad ones exit 2."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"}
    run = subprocess.run(
        [str(BIN / "celery"), *argv[1:], "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


UNIT_NAMES = [
    "jobtrail-web.service",
    "jobtrail-worker.service",
    "jobtrail-wide.service",
    "jobtrail-beat.service",
]


def test_every_unit_is_tested() -> None:
    assert sorted(path.name for path in UNITS.glob("*.service")) == sorted(UNIT_NAMES)


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_every_unit_restarts_and_stops_gracefully(name: str) -> None:
    service = unit(name)
    assert service["Restart"] in {"always", "on-failure"}
    assert int(service["RestartSec"]) > 0
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/jobtrail/jobtrail.env"
    assert service["WorkingDirectory"] == "/srv/jobtrail"


def test_web_runs_gunicorn_on_the_wsgi_module_within_the_stop_timeout() -> None:
    service = unit("jobtrail-web.service")
    argv = exec_start(service)
    assert argv[0].endswith("/gunicorn")
    options = Config().parser().parse_args(argv[1:])  # unknown options exit
    assert options.args == ["config.wsgi"]
    assert importlib.util.find_spec("config.wsgi") is not None
    assert options.graceful_timeout < int(service["TimeoutStopSec"])


def test_worker_runs_celery_and_may_finish_its_longest_task() -> None:
    service = unit("jobtrail-worker.service")
    argv = exec_start(service)
    assert argv[1:4] == ["-A", "config", "worker"]
    assert not {"-B", "--beat"} & set(argv), "beat runs in its own unit, once"
    assert int(service["TimeoutStopSec"]) > settings.CELERY_TASK_TIME_LIMIT
    celery_accepts(argv)


def test_the_wide_lanes_worker_consumes_only_its_queue_as_in_the_procfile() -> None:
    """``webhooks.lanes``: the wide worker takes only the ``wide`` queue (the narrow worker, the
    default queue), with a node name of its own beside the narrow worker's on the same host."""
    procfile = {
        line.split(":", 1)[0]: shlex.split(line.split(":", 1)[1])[1:]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if ":" in line
    }
    service = unit("jobtrail-wide.service")
    for argv in (exec_start(service), procfile["wide"]):
        assert argv[0].endswith("celery") and argv[1:4] == ["-A", "config", "worker"]
        assert argv[argv.index("--queues") + 1] == lanes.QUEUE
        assert argv[argv.index("--hostname") + 1].startswith("wide@")
        celery_accepts(argv)
    assert "--queues" not in procfile["worker"]
    assert "--queues" not in exec_start(unit("jobtrail-worker.service"))
    assert int(service["TimeoutStopSec"]) > settings.JOBTRAIL_WEBHOOK_ROUND_TIME_LIMITS[1]


def test_exactly_one_beat() -> None:
    beats = [
        path.name
        for path in sorted(UNITS.glob("*.service"))
        if re.search(r"\bcelery\b.*\bbeat\b|\s-B\b|--beat\b", unit(path.name)["ExecStart"])
    ]
    assert beats == ["jobtrail-beat.service"]
    argv = exec_start(unit("jobtrail-beat.service"))
    assert argv[1:4] == ["-A", "config", "beat"]
    celery_accepts(argv)


def test_the_env_example_names_only_real_settings() -> None:
    source = (ROOT / "config" / "settings.py").read_text()
    keys = [
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "jobtrail.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "DJANGO_SECRET_KEY" in keys and "DATABASE_URL" in keys
    assert [key for key in keys if f'"{key}"' not in source] == []


def test_redis_visibility_timeout_outlasts_every_countdown() -> None:
    """A task Redis hands out must be acknowledged before the visibility timeout, or a second
    worker gets it: the longest countdown plus the time limit must fit in it."""
    assert build_job_report.default_retry_delay <= settings.JOBTRAIL_LONGEST_COUNTDOWN
    longest_hold = settings.JOBTRAIL_LONGEST_COUNTDOWN + settings.CELERY_TASK_TIME_LIMIT
    visibility = settings.JOBTRAIL_BROKER_VISIBILITY_TIMEOUT
    assert visibility > longest_hold
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == visibility
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1


def refused_setup(**env: str) -> str:
    """Set Django up in a new process with ``env`` added; it must fail: what it wrote."""
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    return run.stderr


def test_a_visibility_timeout_shorter_than_a_countdown_refuses_to_start() -> None:
    stderr = refused_setup(
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0", JOBTRAIL_BROKER_VISIBILITY_TIMEOUT="500"
    )
    assert "ImproperlyConfigured: JOBTRAIL_BROKER_VISIBILITY_TIMEOUT must exceed" in stderr


def test_an_unknown_worker_cpu_policy_refuses_to_start() -> None:
    stderr = refused_setup(JOBTRAIL_WORKER_CPU="batch")
    assert "ImproperlyConfigured: JOBTRAIL_WORKER_CPU must be 'idle' or 'normal'" in stderr


def test_the_units_share_one_metrics_folder_that_outlives_their_restarts() -> None:
    """README "Metrics": the web's /metrics adds up the worker's and beat's samples only if
    the three write to the same folder; a unit's restart must not empty it under the others."""
    for name in UNIT_NAMES:
        service = unit(name)
        environment = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
        assert environment["PROMETHEUS_MULTIPROC_DIR"] == "/run/jobtrail-metrics", name
        assert service["RuntimeDirectory"] == "jobtrail-metrics", name
        assert service["RuntimeDirectoryPreserve"] == "yes", name


def test_gunicorn_loads_the_metrics_hooks_in_the_unit_and_the_procfile() -> None:
    """``--config python:config.gunicorn``: the master marks dead workers in the metrics."""
    procfile = {
        line.split(":", 1)[0]: line.split(":", 1)[1]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if ":" in line
    }
    for argv in (
        exec_start(unit("jobtrail-web.service"))[1:],
        shlex.split(procfile["web"])[2:],
    ):
        options = Config().parser().parse_args(argv)
        assert options.config == "python:config.gunicorn"
    loader = Application.__new__(Application)  # only its config loading, as gunicorn does it
    loader.cfg = Config()
    loader.load_config_from_module_name_or_filename("python:config.gunicorn")
    assert loader.cfg.child_exit is importlib.import_module("config.gunicorn").child_exit


@pytest.mark.parametrize(
    ("allowed", "debug", "warned"),
    [(True, False, True), (False, False, False), (True, True, False)],
)
def test_the_deployment_check_warns_when_private_webhook_targets_are_allowed(
    settings: Any, allowed: bool, debug: bool, warned: bool
) -> None:
    """The setting lifts the SSRF guard for local runs and tests; left on in a deployment
    (DEBUG off), `manage.py check --deploy` (CI's `.ci/check-deploy` fails on a warning) says so."""
    settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS = allowed
    settings.DEBUG = debug

    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])

    assert ("jobtrail.W001" in {message.id for message in found}) is warned
