"""The API's error paths against a live gunicorn, DEBUG on and off, on a private PostgreSQL.

gunicorn is what sends chunked bodies through (``wsgi.input_terminated``), and DEBUG decides
which of Django's handlers answer; the PostgreSQL cluster is this test's own, so it can be
stopped: while it is down every endpoint answers 503 + Retry-After, and the API works again
once it is back.
"""

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack import BIN, ROOT, free_port, wait_until
from tests.live import raw_http

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MIB = 1024 * 1024
PASSWORD = "error-paths-pass-1"


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, on its own port (run as ``postgres`` if root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobtrail-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _env(database_url: str, debug: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBTRAIL_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        JOBTRAIL_READ_DOTENV="0",
        DJANGO_DEBUG="1" if debug else "0",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL="memory://",
        DJANGO_CONN_MAX_AGE="60",
        JOBTRAIL_API_RATE_LIMIT="100000/minute",
        JOBTRAIL_AUTH_RATE_LIMIT="100000/minute",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        subprocess.run(
            ["psql", cluster.url(), "-c", "CREATE DATABASE jobtrail"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        env = _env(cluster.url("jobtrail"), debug=False)
        for command in (
            ["migrate", "--noinput"],
            ["create_api_client", "Errors Co", "errors-client", "--password", PASSWORD],
        ):
            subprocess.run(
                [str(BIN / "python"), "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
        yield cluster
    finally:
        cluster.remove()


class Web:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def request(
        self, method: str, path: str, body: Any = None, *, chunked: bool = False, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        """Send with http.client (chunked when asked: no Content-Length, Transfer-Encoding)."""
        raw = (
            body
            if isinstance(body, bytes)
            else (b"" if body is None else json.dumps(body).encode())
        )
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            **headers,
        }
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if chunked:
                pieces = [raw[i : i + 4096] for i in range(0, len(raw), 4096)] or [b""]
                conn.request(method, path, body=iter(pieces), headers=headers, encode_chunked=True)
            else:
                conn.request(method, path, body=raw if body is not None else None, headers=headers)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()


@pytest.fixture(params=[True, False], ids=["debug-on", "debug-off"])
def web(postgres: PrivatePostgres, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Web]:
    port = free_port()
    log = open(tmp_path / "web.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=_env(postgres.url("jobtrail"), debug=request.param),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (
                    200,
                    503,
                )
            except requests.RequestException:
                return False

        wait_until(up, 60, "gunicorn")
        token = requests.post(
            f"http://127.0.0.1:{port}/api/v1/auth/token/",
            json={"username": "errors-client", "password": PASSWORD},
            timeout=30,
        )
        assert token.status_code == 200, token.text
        yield Web(port, token.json()["access"])
    finally:
        proc.kill()  # the test is over; SIGTERM would wait out kept-alive clients (2 s)
        proc.wait(timeout=15)
        log.close()
        if (tmp_path / "web.log").exists() and request.node.rep_call.failed:  # type: ignore[attr-defined]
            print((tmp_path / "web.log").read_text(errors="replace")[-6000:])


def assert_problem(
    status: int, headers: dict[str, str], body: bytes, expected: int, code: str
) -> None:
    assert status == expected, body[:500]
    assert headers["content-type"].startswith("application/problem+json"), headers
    problem = json.loads(body)
    assert problem["status"] == expected and problem["code"] == code, problem


def test_chunked_bodies_are_read_and_limited(web: Web) -> None:
    code = f"CHUNKED-{web.port}"  # the cluster is shared by the DEBUG on and off runs
    status, _, body = web.request(
        "POST", "/api/v1/jobs/", {"type": "export", "code": code}, chunked=True
    )
    assert status == 201, body
    assert json.loads(body)["code"] == code

    too_big = json.dumps({"type": "export", "metadata": {"x": "a" * MIB}}).encode()
    assert_problem(
        *web.request("POST", "/api/v1/jobs/", too_big, chunked=True), 413, "body_too_large"
    )

    # the same body with a Content-Length still answers 413
    assert_problem(*web.request("POST", "/api/v1/jobs/", too_big), 413, "body_too_large")


def test_a_malformed_chunked_body_answers_a_400_problem(web: Web) -> None:
    """A chunk size that is no hexadecimal number, sent as is over a socket: gunicorn's reader
    raises, the middleware answers (it was a 500)."""
    request = (
        b"POST /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + web.token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n"
    )
    assert_problem(*raw_http(web.port, request), 400, "malformed_chunked_body")


def test_debug_dependent_paths_answer_problems(web: Web) -> None:
    assert_problem(*web.request("GET", "/api/v1/nope/"), 404, "not_found")
    assert_problem(*web.request("POST", "/services/nope", {}), 404, "not_found")
    assert_problem(*web.request("DELETE", "/api/v1/jobs/"), 405, "method_not_allowed")
    assert_problem(
        *web.request(
            "POST",
            "/api/v1/jobs/",
            {"type": "export"},
            **{"Content-Type": "application/json; charset=rot13"},
        ),
        415,
        "unsupported_charset",
    )
    for method in ("GET", "POST", "PATCH"):
        status, headers, _ = web.request(method, "/api/v1/jobs", {"type": "export"})
        assert status == 308, method
        assert headers["location"] == "/api/v1/jobs/"


def test_a_database_outage_answers_503_everywhere_then_recovers(
    web: Web, postgres: PrivatePostgres
) -> None:
    status, _, body = web.request("POST", "/api/v1/jobs/", {"type": "export"})
    assert status == 201, body
    job = json.loads(body)["id"]
    endpoints: list[tuple[str, str, Any]] = [
        ("POST", "/api/v1/auth/token/", {"username": "errors-client", "password": PASSWORD}),
        ("GET", "/api/v1/jobs/", None),
        ("POST", "/api/v1/jobs/", {"type": "export"}),
        ("GET", f"/api/v1/jobs/{job}/", None),
        ("PATCH", f"/api/v1/jobs/{job}/", {"message": "x"}),
        ("POST", f"/api/v1/jobs/{job}/events/", {"status": "started"}),
        ("POST", f"/api/v1/jobs/{job}/cancel/", {}),
        ("GET", f"/api/v1/jobs/{job}/events/", None),
        ("POST", "/api/v1/export-job-events/", {"jobId": job, "event": "started"}),
        ("POST", "/services/rest/v1/export/job/status", {"jobCode": "x"}),
        ("GET", f"/engine/api/api-jobs/{job}", None),
        ("GET", "/api/v1/webhook-endpoints/", None),
        ("GET", "/api/v1/webhook-deliveries/", None),
    ]
    postgres.stop()
    try:
        for method, path, body in endpoints:
            for key in (None, "outage-key"):
                extra = {"Idempotency-Key": key} if key and method == "POST" else {}
                status, headers, answer = web.request(method, path, body, **extra)
                assert_problem(status, headers, answer, 503, "database_unavailable")
                assert headers["retry-after"] == "5", (method, path)
    finally:
        postgres.start()

    # A kept connection released healthy less than JOBTRAIL_DB_HEALTH_CHECK_AFTER (1 s) before
    # the restart is reused unchecked and fails its one request (a 503 with Retry-After, as
    # above); Django then drops it. The web recovers by itself, no restart of its own:
    wait_until(
        lambda: web.request("GET", f"/api/v1/jobs/{job}/")[0] == 200,
        30,
        "the web to answer again after the database restart",
    )
    status, _, body = web.request("POST", "/api/v1/jobs/", {"type": "export"})
    assert status == 201, body
    status, _, body = web.request("GET", f"/api/v1/jobs/{job}/")
    assert status == 200, body
