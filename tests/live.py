"""Helpers for tests against live processes: ports, waiting, child processes, Redis, HTTP.

Shared by the end-to-end tests (``tests/e2e``) and the production suite (``tests/production``).
"""

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def call_failed(request: Any) -> bool:
    """Whether the test of this fixture request failed (see ``pytest_runtest_makereport``)."""
    report = getattr(request.node, "rep_call", None)
    return bool(report is not None and report.failed)


# How long a test's processes get to stop at its teardown before they are killed.
TEARDOWN_GRACE = 3.0


class Processes:
    """Named child processes, each in its own session and logging to ``workdir/<name>.log``.

    Stopping signals the whole process group, so a server's children (Celery's pool, Erlang's
    helpers) go with it.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: list[str], *, env: dict[str, str], **kwargs: Any) -> int:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        kwargs.setdefault("cwd", ROOT)
        self.procs[name] = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        log.close()
        return self.procs[name].pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Send ``sig`` to the process group and wait for it (SIGKILL once ``timeout`` passes)."""
        self.stop_together([name], {name: sig}, timeout)

    def stop_together(
        self, names: list[str], signals: dict[str, int] | None = None, timeout: float = 15
    ) -> None:
        """``stop`` for several processes at once (SIGTERM unless ``signals`` names another):
        each is signalled, then all are waited for, so a teardown lasts as long as the slowest
        process, not their sum."""
        procs = {name: self.procs.pop(name) for name in names if name in self.procs}
        for name, proc in procs.items():
            _signal_group(proc.pid, (signals or {}).get(name, signal.SIGTERM))
        deadline = time.monotonic() + timeout
        for proc in procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
            _signal_group(proc.pid, signal.SIGKILL)  # children that outlived their leader

    def stop_all(self, last: list[str] | None = None) -> None:
        """Stop every process together, then those in ``last`` (the broker the others use).

        The test is over, so gunicorn (named "web") is killed: on SIGTERM it waits for every
        kept-alive client connection to time out (2 s; each end-to-end test's teardown took
        that much longer), and its quick shutdown (SIGINT) sometimes hung until the timeout.
        The others get ``TEARDOWN_GRACE`` seconds to stop, then SIGKILL (a RabbitMQ node took
        15 s). Graceful stops are tested on their own (``tests/e2e/test_processes.py``, the
        production suite's worker and broker restarts).
        """
        last = [name for name in last or [] if name in self.procs]
        first = [name for name in self.procs if name not in last]
        self.stop_together(first, signals={"web": signal.SIGKILL}, timeout=TEARDOWN_GRACE)
        self.stop_together(last, timeout=TEARDOWN_GRACE)

    def dump_logs(self, names: list[str] | None = None, tail: int = 6000) -> str:
        names = names or sorted(p.stem for p in self.workdir.glob("*.log"))
        return "\n".join(
            f"----- {name}.log (tail) -----\n{self.log(name)[-tail:]}" for name in names
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


# --- Redis ------------------------------------------------------------------------------------


def redis_server_args(port: int, workdir: Path) -> list[str]:
    """A throwaway Redis: loopback only, nothing written to disk."""
    redis = shutil.which("redis-server")
    assert redis, "redis-server is not installed"
    # fmt: off
    return [
        redis, "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]
    # fmt: on


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- HTTP -------------------------------------------------------------------------------------


def raw_http(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write ``raw`` as is to 127.0.0.1:``port`` (what no HTTP client sends) and read the
    answer: status, headers (lower-case names), body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()


def web_ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def obtain_token(base: str, username: str, password: str) -> str:
    response = requests.post(
        f"{base}/api/v1/auth/token/",
        json={"username": username, "password": password},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access"])


class Http:
    """A requests session against a running web process, authenticated as an API client."""

    def __init__(self, base: str, token: str, timeout: float = 30) -> None:
        self.base = base
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=self.timeout, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=self.timeout, **kwargs)

    def patch(self, path: str, body: Any = None) -> requests.Response:
        return self.session.patch(self.base + path, json=body, timeout=self.timeout)
