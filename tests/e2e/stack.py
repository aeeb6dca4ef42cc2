"""Real processes for end-to-end tests: Redis, gunicorn, a Celery worker and Celery beat.

They share the test database (PostgreSQL), so the tests that use them are transactional.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s["HOST"] or "127.0.0.1", s["PORT"] or 5432
    return f"postgres://{s['USER']}{password}@{host}:{port}/{s['NAME']}"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class Stack:
    workdir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    redis_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

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
            DJANGO_CONN_MAX_AGE="0",
            PYTHONUNBUFFERED="1",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update(self.env_overrides)
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- broker ---------------------------------------------------------------------------

    def start_broker(self) -> None:
        redis = shutil.which("redis-server")
        assert redis, "redis-server is not installed"
        self._spawn(
            "redis",
            [
                redis,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
        )
        wait_until(self._broker_answers, 20, "redis")

    def stop_broker(self) -> None:
        self._stop("redis")
        wait_until(lambda: not self._broker_answers(), 20, "redis to stop")

    def _broker_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    # --- processes ------------------------------------------------------------------------

    def start(self, *, beat: bool = True) -> "Stack":
        self.start_broker()
        self._spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
            ],
        )
        self.start_worker(wait=False)
        if beat:
            self._spawn(
                "beat",
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(self.workdir / "beat-schedule"),
                ],
            )
        wait_until(self._web_ready, 60, "gunicorn")
        wait_until(lambda: "ready." in self.log("worker"), 60, "the Celery worker")
        if beat:
            wait_until(lambda: "beat: Starting" in self.log("beat"), 60, "Celery beat")
        return self

    def start_worker(self, *, wait: bool = True, pool: tuple[str, ...] = ()) -> None:
        """Start the worker: ``pool`` replaces the default ``--pool threads --concurrency 8``
        (e.g. ``("--concurrency", "2")``: the Procfile's prefork worker)."""
        offset = len(self.log("worker"))  # the log is appended to across restarts
        self._spawn(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                *(pool or ("--pool", "threads", "--concurrency", "8")),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                f"e2e-{self.redis_port}@%h",
            ],
        )
        if wait:
            wait_until(lambda: "ready." in self.log("worker")[offset:], 60, "the Celery worker")

    def stop_worker(self) -> None:
        self._stop("worker")

    def _web_ready(self) -> bool:
        try:
            return requests.get(f"{self.api}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        for name in ("beat", "worker", "web", "redis"):
            self._stop(name)

    def dump_logs(self) -> str:
        return "\n".join(
            f"----- {name}.log (tail) -----\n{self.log(name)[-4000:]}"
            for name in ("web", "worker", "beat", "redis")
        )
