"""Real processes for end-to-end tests: Redis, gunicorn, a Celery worker and Celery beat.

They share the test database (PostgreSQL), so the tests that use them are transactional.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

from tests.live import (
    ROOT,
    Processes,
    free_port,
    redis_answers,
    redis_server_args,
    wait_until,
    web_ready,
)

__all__ = ["ROOT", "Stack", "wait_until"]

BIN = Path(sys.executable).parent


def test_database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{s['USER']}{password}@{host}:{port}/{s['NAME']}"


@dataclass
class Stack:
    workdir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    redis_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.processes = Processes(self.workdir)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBTRAIL_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings_test",
            JOBTRAIL_READ_DOTENV="0",
            DATABASE_URL=test_database_url(),
            CELERY_BROKER_URL=self.broker_url,
            JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
            JOBTRAIL_WEBHOOK_RETRY_SCHEDULE="1,1,1,1,1",
            JOBTRAIL_API_RATE_LIMIT="100000/minute",
            JOBTRAIL_WAKEUP_WINDOW="0.02",  # coalesced wake-ups, as deployed
            JOBTRAIL_DEBUG_LOGGERS="ops.scheduler",  # beat's sweep runs, counted by tests
            DJANGO_CONN_MAX_AGE="0",
            PYTHONUNBUFFERED="1",
            # this stack's processes share their metrics here (not the test process's folder)
            PROMETHEUS_MULTIPROC_DIR=str(self.workdir / "prometheus"),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update(self.env_overrides)
        return env

    def log(self, name: str) -> str:
        return self.processes.log(name)

    # --- broker ---------------------------------------------------------------------------

    def start_broker(self) -> None:
        args = redis_server_args(self.redis_port, self.workdir)
        self.processes.spawn("redis", args, env=self.env())
        wait_until(lambda: redis_answers(self.redis_port), 20, "redis")

    def stop_broker(self) -> None:
        self.processes.stop("redis")
        wait_until(lambda: not redis_answers(self.redis_port), 20, "redis to stop")

    # --- processes ------------------------------------------------------------------------

    def start(self, *, beat: bool = True) -> "Stack":
        self.start_broker()
        env = self.env()
        self.start_web(wait=False)
        self.start_worker(wait=False)
        # fmt: off
        if beat:
            self.processes.spawn("beat", [
                str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO",
                "--schedule", str(self.workdir / "beat-schedule"),
            ], env=env)
        # fmt: on
        wait_until(lambda: web_ready(self.api), 60, "gunicorn")
        wait_until(lambda: "ready." in self.log("worker"), 60, "the Celery worker")
        if beat:
            wait_until(lambda: "beat: Starting" in self.log("beat"), 60, "Celery beat")
        return self

    def start_web(self, *, wait: bool = True) -> None:
        # fmt: off
        self.processes.spawn("web", [
            str(BIN / "gunicorn"), "config.wsgi", "--config", "python:config.gunicorn",
            "--bind", f"127.0.0.1:{self.web_port}",
            "--workers", "2", "--threads", "4", "--no-control-socket",
        ], env=self.env())
        # fmt: on
        if wait:
            wait_until(lambda: web_ready(self.api), 60, "gunicorn")

    def restart_web(self) -> None:
        """A fresh gunicorn: after a transactional test's flush its processes' caches (content
        type ids, which the admin log refers to) name rows that are gone."""
        self.processes.stop("web")
        self.start_web()

    def start_worker(self, *, wait: bool = True, pool: tuple[str, ...] = ()) -> None:
        """Start the worker: ``pool`` replaces the default ``--pool threads --concurrency 8``
        (e.g. ``("--concurrency", "2")``: the Procfile's prefork worker)."""
        offset = len(self.log("worker"))  # the log is appended to across restarts
        # fmt: off
        self.processes.spawn("worker", [
            str(BIN / "celery"), "-A", "config", "worker",
            *(pool or ("--pool", "threads", "--concurrency", "8")),
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--hostname", f"e2e-{self.redis_port}@%h",
        ], env=self.env())
        # fmt: on
        if wait:
            wait_until(lambda: "ready." in self.log("worker")[offset:], 60, "the Celery worker")

    def stop_worker(self) -> None:
        self.processes.stop("worker")

    def stop(self) -> None:
        self.processes.stop_all(last=["redis"])

    def dump_logs(self) -> str:
        return self.processes.dump_logs(["web", "worker", "beat", "redis"], tail=4000)
