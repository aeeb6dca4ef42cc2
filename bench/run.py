"""`make bench`: hot paths and webhooks against baselines run in the same invocation.

    make bench                         # every scenario; results in bench/results/
    make bench BENCH=http,webhooks     # some scenarios: http, webhooks, latency, noisy
    make bench BENCH_QUICK=1           # smoke run (tiny sizes, 1 s wrk runs) into var/bench/
    .venv/bin/python bench/run.py --table   # rewrite bench/results/README.md from the JSON

The machine is shared and noisy, so every figure is compared with a baseline measured in the
same run, interleaved with it (baseline, target, baseline, target, ...; medians):

http      wrk (8 connections) against gunicorn started with the Procfile's `web` flags: the API's
          hot paths vs bench/ceiling.py (Django + DRF + simplejwt doing one INSERT or one SELECT)
          served with the same flags. No worker runs: this is the request path alone.
webhooks  a backlog of job changes (stale jobs expired set-based, one delivery per job and
          endpoint) drained by the Procfile's worker (and beat) started afterwards, to
          bench/receiver.py answering 204, vs bench/rawclient.py (one urllib3 loop posting the same
          bodies, signed, to the same receiver).
latency   commit -> first webhook attempt at a steady rate of job changes (open-loop POST /jobs/).
noisy     company B's POST /jobs/ and webhook latency, alone and while company A (1,000
          subscribed endpoints) creates jobs; the two phases alternated BENCH_NOISY_ROUNDS
          times (default 2), percentiles over the pooled samples.

Every webhook run prints delivered / lost / duplicate counts (by webhook-id at the receiver).
BENCH_RAW=1 also writes noisy's raw series (B's requests with their POST and webhook latencies,
A's requests, every A arrival) to noisy-raw-<phase>-<round>.json beside the results, to see
when B's tail happens; BENCH_KEEP_DB=1 leaves the last database for SQL afterwards.
BENCH_NOISY_A_RECEIVER=idle sends A's webhooks to a second receiver running under Linux's
SCHED_IDLE (A's 1,000 endpoints stand for other machines: their CPU is then not taken from the
2 cores under test; B's receiver stays at normal priority). BENCH_APP_ENV="NAME=value ..."
passes settings to the application under test (e.g. JOBTRAIL_WORKER_CPU=idle); the harness
otherwise gives it only its own settings. BENCH_NOISY_A=cpu or cpu-idle measures the machine's
floor: company A is replaced by bench/burn.py, one process per core busy with Python for
BENCH_NOISY_A_CPU core-seconds (default 0.9, about what one of A's jobs costs here: compare the
host CPU column of a default run) at each of A's arrivals, sharing nothing with Jobtrail; under
SCHED_IDLE with cpu-idle. Each phase records the host's CPU in use (cores, from /proc/stat).
Needs PostgreSQL on 127.0.0.1:5432 (databases <BENCH_DB_PREFIX>* are created and dropped
here), Redis (BENCH_REDIS_URL, default db 9, flushed) and wrk (`apt-get install wrk`).
Timing lives here, never in a test's assertion.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: bench/ is on the path, the project is not
    sys.path.insert(0, str(ROOT))

from tests.live import free_port, wait_until  # noqa: E402 - after the path is set

BENCH_DIR = ROOT / "bench"
BIN = Path(sys.executable).parent
SCENARIOS = ("http", "webhooks", "latency", "noisy")
X = "\u00d7"  # the multiplication sign of the ratios


def _env_int(name: str, full: int, quick: int, is_quick: bool) -> int:
    return int(os.environ.get(name) or (quick if is_quick else full))


@dataclass
class Config:
    quick: bool = field(default_factory=lambda: os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    scenarios: list[str] = field(default_factory=list)
    pg: str = field(
        default_factory=lambda: os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    )
    db_prefix: str = field(
        default_factory=lambda: os.environ.get("BENCH_DB_PREFIX", "jobtrail_bench")
    )
    redis: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    connections: int = field(default_factory=lambda: int(os.environ.get("BENCH_CONNECTIONS", "8")))
    out: Path = ROOT / "bench" / "results"

    def __post_init__(self) -> None:
        q = self.quick
        names = [s.strip() for s in os.environ.get("BENCH", "").split(",") if s.strip()]
        unknown = set(names) - set(SCENARIOS)
        if unknown:
            raise SystemExit(
                f"unknown BENCH scenario(s): {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(SCENARIOS)}"
            )
        self.scenarios = names or list(SCENARIOS)
        self.out = Path(
            os.environ.get("BENCH_OUT")
            or (ROOT / "var" / "bench" if q else ROOT / "bench" / "results")
        )
        self.rounds = _env_int("BENCH_ROUNDS", 3, 1, q)
        self.duration = _env_int("BENCH_DURATION", 10, 1, q)
        self.warmup = 2 if not q else 1
        self.webhook_changes = _env_int("BENCH_WEBHOOK_CHANGES", 5000, 60, q)
        self.webhook_endpoints = _env_int("BENCH_WEBHOOK_ENDPOINTS", 1, 1, q)
        self.webhook_rounds = _env_int("BENCH_WEBHOOK_ROUNDS", 2, 1, q)
        self.webhook_stall = _env_int("BENCH_WEBHOOK_STALL", 60, 30, q)
        self.latency_rates = [
            int(r)
            for r in (os.environ.get("BENCH_LATENCY_RATES") or ("5" if q else "20,200")).split(",")
        ]
        self.latency_duration = _env_int("BENCH_LATENCY_DURATION", 20, 3, q)
        self.noisy_endpoints = _env_int("BENCH_NOISY_ENDPOINTS", 1000, 20, q)
        self.noisy_duration = _env_int("BENCH_NOISY_DURATION", 30, 4, q)
        self.noisy_rate_a = float(os.environ.get("BENCH_NOISY_RATE_A") or 0.5)
        self.noisy_rate_b = float(os.environ.get("BENCH_NOISY_RATE_B") or (5 if q else 10))
        self.noisy_rounds = _env_int("BENCH_NOISY_ROUNDS", 2, 1, q)
        self.noisy_a_receiver = os.environ.get("BENCH_NOISY_A_RECEIVER") or "shared"
        if self.noisy_a_receiver not in ("shared", "idle"):
            raise SystemExit("BENCH_NOISY_A_RECEIVER: 'shared' or 'idle'")
        self.noisy_a = os.environ.get("BENCH_NOISY_A") or "jobtrail"
        if self.noisy_a not in ("jobtrail", "cpu", "cpu-idle"):
            raise SystemExit("BENCH_NOISY_A: 'jobtrail', 'cpu' or 'cpu-idle'")
        self.noisy_a_cpu = float(os.environ.get("BENCH_NOISY_A_CPU") or 0.9)
        items = shlex.split(os.environ.get("BENCH_APP_ENV") or "")
        if any("=" not in item for item in items):
            raise SystemExit('BENCH_APP_ENV: "NAME=value NAME=value ..."')
        self.app_settings = dict(item.split("=", 1) for item in items)
        # how long a run waits for the last webhooks (while the receiver still gets something)
        self.webhook_wait = _env_int("BENCH_WEBHOOK_WAIT", 1200, 120, q)

    def db_url(self, name: str) -> str:
        return f"{self.pg.rstrip('/')}/{name}"


# --- small helpers ----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def rounded(value: float | None, digits: int = 2) -> float | None:
    """``value`` rounded (a median of two, 0.41000000000000003, reads 0.41)."""
    return None if value is None else round(value, digits)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


HTTP = urllib3.PoolManager(maxsize=64, retries=False, timeout=urllib3.Timeout(30))


def http_json(method: str, url: str, **kwargs: Any) -> Any:
    response = HTTP.request(method, url, **kwargs)
    return json.loads(response.data or b"null")


# --- processes --------------------------------------------------------------------------------


def procfile() -> dict[str, list[str]]:
    """The Procfile's commands, as argv lists (``exec`` dropped, programs from this venv)."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if not sep or line.startswith("#"):
            continue
        argv = shlex.split(command.strip())
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if (BIN / argv[0]).exists():
            argv[0] = str(BIN / argv[0])
        commands[name.strip()] = argv
    return commands


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """Expand the Procfile's ``${NAME:-default}`` and ``$NAME`` references from ``env``."""

    def value(m: re.Match[str]) -> str:
        return env.get(m.group(1) or m.group(3)) or (m.group(2) or "")

    pattern = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")
    return [pattern.sub(value, arg) for arg in argv]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                child = int(stat.parent.name)
                found += [child, *_children(child)]
    return found


class Processes:
    """The processes the harness starts; stopped by pid (and their children), never by name."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.stop(name)
        argv = expand(argv, env)
        out = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in children:  # prefork pool processes leave the worker's process group
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


# --- the bench environment -----------------------------------------------------------------


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.workdir = Path(tempfile.mkdtemp(prefix="jobtrail-bench-"))
        self.procs = Processes(self.workdir)
        self.db = config.db_prefix
        self.template = f"{config.db_prefix}_tmpl"
        self.ceiling_db = f"{config.db_prefix}_ceiling"
        self.web_port = free_port()
        self.ceiling_port = free_port()
        self.receiver_port = free_port()
        self.receiver_a_port = free_port()
        self.commands = procfile()

    # environment and databases

    def app_env(self, database: str | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_", "DATABASE_URL"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            JOBTRAIL_READ_DOTENV="0",
            DJANGO_SECURE_SSL_REDIRECT="0",  # wrk and the clients speak plain HTTP
            DATABASE_URL=self.config.db_url(database or self.db),
            CELERY_BROKER_URL=self.config.redis,
            JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
            JOBTRAIL_API_RATE_LIMIT="1000000000/minute",
            JOBTRAIL_ACCESS_TOKEN_LIFETIME=str(24 * 3600),
            JOBTRAIL_PORT=str(self.web_port),
            PYTHONUNBUFFERED="1",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update(self.config.app_settings)
        return env

    def pg_admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.config.db_url("postgres"), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def drop_databases(self) -> None:
        from django.db import connections

        with suppress(Exception):
            connections.close_all()
        self.pg_admin(
            *(
                f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'
                for n in (self.db, self.template, self.ceiling_db)
            )
        )

    def create_template(self) -> None:
        log(f"creating the template database {self.template} (migrate)")
        self.pg_admin(
            f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)',
            f'CREATE DATABASE "{self.template}"',
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.app_env(self.template),
            check=True,
        )

    def reset(self) -> None:
        """A fresh application database (from the migrated template) and an empty broker."""
        from django.db import connections

        for name in ("web", "worker", "wide", "beat"):
            self.procs.stop(name)
        if "config.outbox" in sys.modules:  # this process's own wake-up thread (expiry runs)
            sys.modules["config.outbox"].stop_waker()
        connections.close_all()
        self.pg_admin(
            f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)',
            f'CREATE DATABASE "{self.db}" TEMPLATE "{self.template}"',
        )
        import redis

        redis.Redis.from_url(self.config.redis).flushdb()
        self.reset_receivers()

    def reset_receivers(self) -> None:
        for name, url in (("receiver", self.receiver_url), ("receiver-a", self.receiver_a_url)):
            if self.procs.alive(name):
                http_json("POST", f"{url}/_reset")

    # processes

    def start_web(self) -> None:
        self.procs.start("web", self.commands["web"], self.app_env())
        wait_until(self._web_ready, 60, "gunicorn (the Procfile's web)")

    def _web_ready(self) -> bool:
        if not self.procs.alive("web"):
            raise RuntimeError("gunicorn exited:\n" + self.procs.log("web")[-3000:])
        try:
            return HTTP.request("GET", f"{self.web_url}/healthz", timeout=1).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def start_worker(self, *, beat: bool = True) -> None:
        """The Procfile's two workers (``worker``, and ``wide``: the wide lane's) and beat."""
        offsets = {name: len(self.procs.log(name)) for name in ("worker", "wide")}
        for name in offsets:
            self.procs.start(name, self.commands[name], self.app_env())
        if beat:
            self.procs.start("beat", self.commands["beat"], self.app_env())
        for name, offset in offsets.items():
            wait_until(
                lambda name=name, offset=offset: "ready." in self.procs.log(name)[offset:],
                60,
                f"the Celery worker ({name})",
            )

    def stop_worker(self) -> None:
        for name in ("worker", "wide", "beat"):
            self.procs.stop(name)

    def start_ceiling(self) -> str:
        """Set the ceiling app up and serve it with the Procfile's web flags; return a token."""
        self.pg_admin(
            f'DROP DATABASE IF EXISTS "{self.ceiling_db}" WITH (FORCE)',
            f'CREATE DATABASE "{self.ceiling_db}"',
        )
        env = {**self.app_env(), "DATABASE_URL": self.config.db_url(self.ceiling_db)}
        out = subprocess.run(
            [sys.executable, str(BENCH_DIR / "ceiling.py"), str(self.pool_size)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        token, self.ceiling_first_row = out[0], int(out[1])
        argv = [
            "ceiling:application" if arg == "config.wsgi" else arg for arg in self.commands["web"]
        ]
        argv[1:1] = ["--pythonpath", str(BENCH_DIR)]
        self.procs.start("ceiling", argv, {**env, "JOBTRAIL_PORT": str(self.ceiling_port)})

        def ready() -> bool:
            if not self.procs.alive("ceiling"):
                raise RuntimeError("ceiling gunicorn exited:\n" + self.procs.log("ceiling")[-3000:])
            try:
                return HTTP.request("GET", f"{self.ceiling_url}/get/1", timeout=1).status in (
                    200,
                    401,
                    404,
                )
            except urllib3.exceptions.HTTPError:
                return False

        wait_until(ready, 60, "the ceiling app")
        return token

    def start_receiver(self) -> None:
        self.procs.start(
            "receiver",
            [sys.executable, str(BENCH_DIR / "receiver.py"), "--port", str(self.receiver_port)],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_until(lambda: "listening" in self.procs.log("receiver"), 30, "the receiver")
        if self.config.noisy_a_receiver == "idle":
            argv = [sys.executable, str(BENCH_DIR / "receiver.py")]
            self.procs.start(
                "receiver-a",
                [*UNDER_SCHED_IDLE, *argv, "--port", str(self.receiver_a_port)],
                {**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            wait_until(lambda: "listening" in self.procs.log("receiver-a"), 30, "A's receiver")

    @property
    def receiver_a_url(self) -> str:
        """Where the noisy neighbour's company A gets its webhooks."""
        if self.config.noisy_a_receiver == "idle":
            return f"http://127.0.0.1:{self.receiver_a_port}"
        return self.receiver_url

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def ceiling_url(self) -> str:
        return f"http://127.0.0.1:{self.ceiling_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def pool_size(self) -> int:
        return 200 if self.config.quick else 1000


# --- seeding (the ORM, in this process) ---------------------------------------------------------


@dataclass
class Client:
    company: Any
    token: str


def api_client(name: str) -> Client:
    from jobs.accounts import api_client_create
    from jobs.auth import CompanyTokenObtainPairSerializer

    creds = api_client_create(
        company_name=name, username=re.sub(r"\W+", "-", name.lower()), password="bench-pass-123456"
    )
    token = CompanyTokenObtainPairSerializer.get_token(creds.user).access_token  # type: ignore[attr-defined]
    return Client(company=creds.company, token=str(token))


def subscribe(company: Any, urls: list[str], events: list[str]) -> None:
    from webhooks.models import WebhookEndpoint
    from webhooks.services import generate_secret

    WebhookEndpoint.objects.bulk_create(
        [
            WebhookEndpoint(company=company, url=url, events=events, secret=generate_secret())
            for url in urls
        ],
        batch_size=1000,
    )


def job_pool(company: Any, n: int, *, status: str, stale: bool = False) -> list[Any]:
    """``n`` jobs inserted in bulk (no events, no webhooks): the material of a run."""
    from django.utils import timezone

    from jobs.models import Job

    now = timezone.now()
    tag = uuid.uuid4().hex[:6].upper()
    jobs = [
        Job(
            company=company,
            code=f"B{tag}-{i:07d}",
            type="export",
            status=status,
            start_time=now if status == "processing" else None,
            last_activity_at=now,
            expires_after=3600,
            expires_at=now - timedelta(seconds=1) if stale else now + timedelta(hours=1),
        )
        for i in range(n)
    ]
    return list(Job.objects.bulk_create(jobs, batch_size=5000))


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    wraps: int
    error_kinds: dict[str, int]
    # CPU milliseconds per request: the server's gunicorn processes, the PostgreSQL backends of
    # the bench databases, wrk itself (a figure the machine's other load moves far less)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "cpu_ms_per_request": {k: round(v, 3) for k, v in self.cpu_ms.items()},
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
            "wraps": self.wraps,
            **({"error_kinds": self.error_kinds} if self.errors else {}),
        }


def write_requests(workdir: Path, lines: list[tuple[str, str, str]]) -> Path:
    path = workdir / f"requests-{uuid.uuid4().hex[:8]}.tsv"
    path.write_text("".join(f"{m}\t{p}\t{b}\n" for m, p, b in lines))
    return path


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# prefix to a command: run it under Linux's SCHED_IDLE (util-linux's chrt execs it: same pid)
UNDER_SCHED_IDLE = ["chrt", "--idle", "0"]


def cpu_seconds(port: int, db_prefix: str) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each process of the gunicorn serving ``port`` ("app") and of each
    PostgreSQL backend connected to a ``db_prefix`` database ("postgres"; their process titles
    name the database), by pid."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = (
            "app"
            if "gunicorn" in cmdline and f"127.0.0.1:{port}" in cmdline
            else "postgres"
            if cmdline.startswith("postgres: ") and f" {db_prefix}" in cmdline
            else None
        )
        if group:
            found[int(entry.name)] = (group, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds used between two ``cpu_seconds`` readings, per group: each process's own
    difference (a process started meanwhile counts from zero). A process that exited meanwhile,
    such as a backend whose connection reached its CONN_MAX_AGE, is missing from ``after``:
    subtracting its whole past from a group total made whole runs come out negative."""
    used = {"app": 0.0, "postgres": 0.0}
    for pid, (group, seconds) in after.items():
        earlier = before.get(pid)
        used[group] += seconds - (earlier[1] if earlier and earlier[0] == group else 0.0)
    return used


def wrk(url: str, token: str, requests_file: Path, duration: float, connections: int) -> WrkResult:
    threads = 2
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    prefix = os.environ.get("BENCH_DB_PREFIX", "jobtrail_bench")
    before, children_before = cpu_seconds(port, prefix), os.times()
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH_DIR / "wrk.lua"),
            url,
        ],
        env={
            **os.environ,
            "TOKEN": token,
            "BENCH_REQUESTS": str(requests_file),
            "BENCH_THREADS": str(threads),
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after, children_after = cpu_seconds(port, prefix), os.times()
    used = cpu_used(before, after)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    kinds = ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    errors = sum(data[k] for k in kinds)
    return WrkResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=errors,
        wraps=data["wraps"],
        error_kinds={k: data[k] for k in kinds if data[k]},
        cpu_ms={
            **{k: 1000 * seconds / max(1, data["requests"]) for k, seconds in used.items()},
            "wrk": 1000
            * (
                children_after.children_user
                + children_after.children_system
                - children_before.children_user
                - children_before.children_system
            )
            / max(1, data["requests"]),
        },
    )


def check_request(base: str, token: str, line: tuple[str, str, str]) -> None:
    """Send one request of a run's kind first: a run of invalid requests measures nothing."""
    method, path, body = line
    headers = {"Authorization": f"Bearer {token}"}
    if body:
        headers["Content-Type"] = "application/json"
    response = HTTP.request(method, base + path, body=body.encode() or None, headers=headers)
    if not 200 <= response.status < 300:
        raise RuntimeError(f"{method} {path} answered {response.status}: {response.data[:500]!r}")


# --- scenario: http -----------------------------------------------------------------------------


@dataclass
class HttpCase:
    name: str
    baseline: str  # "insert" or "select"
    one_shot: bool  # each line valid once (event POST over pending jobs)
    lines: Callable[[Client, int], list[tuple[str, str, str]]]


def _jobs_create(client: Client, n: int) -> list[tuple[str, str, str]]:
    return [("POST", "/api/v1/jobs/", '{"type": "export", "total_records": 100}')]


def _event_post(client: Client, n: int) -> list[tuple[str, str, str]]:
    jobs = job_pool(client.company, n, status="pending")
    return [("POST", f"/api/v1/jobs/{j.pk}/events/", '{"status": "started"}') for j in jobs]


def _progress(client: Client, n: int) -> list[tuple[str, str, str]]:
    jobs = job_pool(client.company, n, status="processing")
    return [
        (
            "PATCH",
            f"/api/v1/jobs/{j.pk}/",
            json.dumps({"effected_records": i % 100, "message": f"{i} pushed"}),
        )
        for i, j in enumerate(jobs)
    ]


def _job_get(client: Client, n: int) -> list[tuple[str, str, str]]:
    return [
        ("GET", f"/api/v1/jobs/{j.pk}/", "")
        for j in job_pool(client.company, n, status="processing")
    ]


def _seed002(client: Client, n: int) -> list[tuple[str, str, str]]:
    jobs = job_pool(client.company, n, status="processing")
    return [
        ("POST", "/services/rest/v1/export/job/status", json.dumps({"jobCode": j.code}))
        for j in jobs
    ]


def _seed003(client: Client, n: int) -> list[tuple[str, str, str]]:
    jobs = job_pool(client.company, n, status="processing")
    return [("GET", f"/engine/api/api-jobs/{j.pk}", "") for j in jobs]


HTTP_CASES = [
    HttpCase("POST /api/v1/jobs/ (2 endpoints subscribed)", "insert", False, _jobs_create),
    HttpCase("POST /api/v1/jobs/{id}/events/ started (2 endpoints)", "insert", True, _event_post),
    HttpCase("PATCH /api/v1/jobs/{id}/ progress (2 endpoints)", "insert", False, _progress),
    HttpCase("GET /api/v1/jobs/{id}/", "select", False, _job_get),
    HttpCase("POST /services/rest/v1/export/job/status (seed 002)", "select", False, _seed002),
    HttpCase("GET /engine/api/api-jobs/{id} (seed 003)", "select", False, _seed003),
]


def scenario_http(bench: Bench) -> dict[str, Any]:
    c = bench.config
    ceiling_token = bench.start_ceiling()
    first = bench.ceiling_first_row
    ceiling_lines = {
        "insert": [("POST", "/insert", '{"type": "export", "total_records": 100}')],
        "select": [("GET", f"/get/{first + i}", "") for i in range(bench.pool_size)],
    }
    ceiling_files = {k: write_requests(bench.workdir, v) for k, v in ceiling_lines.items()}
    for kind, lines in ceiling_lines.items():
        check_request(bench.ceiling_url, ceiling_token, lines[0])
        wrk(bench.ceiling_url, ceiling_token, ceiling_files[kind], c.warmup, c.connections)
    results = []
    ceiling_peak = 0.0  # the fastest ceiling run so far (req/s)
    for case in HTTP_CASES:
        bench.reset()
        client = api_client("Bench HTTP")
        subscribe(client.company, [f"http://127.0.0.1:9/hook/{i}" for i in range(2)], ["*"])
        bench.start_web()
        # check one request, then warm up (imports, connections) on a pool of its own
        warm = case.lines(client, bench.pool_size)
        check_request(bench.web_url, client.token, warm[0])
        wrk(
            bench.web_url,
            client.token,
            write_requests(bench.workdir, warm),
            c.warmup,
            c.connections,
        )
        base_runs: list[WrkResult] = []
        target_runs: list[WrkResult] = []
        for _round in range(c.rounds):
            base_runs.append(
                wrk(
                    bench.ceiling_url,
                    ceiling_token,
                    ceiling_files[case.baseline],
                    c.duration,
                    c.connections,
                )
            )
            # a one-shot pool holds three times what the fastest ceiling run of this invocation
            # did in a run (a ceiling run slowed by the machine's noise sized it below what
            # Jobtrail then served: the pool wrapped and the run was invalid), at least the
            # pool size
            ceiling_peak = max(ceiling_peak, base_runs[-1].rps)
            size = (
                max(bench.pool_size, int(3 * ceiling_peak * c.duration))
                if case.one_shot
                else bench.pool_size
            )
            target_file = write_requests(bench.workdir, case.lines(client, size))
            target_runs.append(
                wrk(bench.web_url, client.token, target_file, c.duration, c.connections)
            )
        base_rps = median([r.rps for r in base_runs])
        rps = median([r.rps for r in target_runs])
        base_p99 = median([r.p99_ms for r in base_runs])
        p99 = median([r.p99_ms for r in target_runs])
        errors = sum(r.errors for r in target_runs)
        baseline_errors = sum(r.errors for r in base_runs)
        wraps = sum(r.wraps for r in target_runs) if case.one_shot else 0
        cpu = {
            side: {k: rnd(median([r.cpu_ms[k] for r in runs]), 3) for k in runs[0].cpu_ms}
            for side, runs in (("baseline", base_runs), ("target", target_runs))
        }
        result = {
            "name": case.name,
            "baseline": "ceiling: one INSERT"
            if case.baseline == "insert"
            else "ceiling: one SELECT by pk",
            "baseline_rps": rnd(base_rps, 1),
            "rps": rnd(rps, 1),
            "ratio": ratio(rps, base_rps),
            "baseline_p99_ms": rnd(base_p99, 2),
            "p99_ms": rnd(p99, 2),
            "p99_ratio": ratio(p99, base_p99),
            "valid": errors == 0 and wraps == 0 and baseline_errors == 0,
            "errors": errors,
            "baseline_errors": baseline_errors,
            "wraps": wraps,
            "cpu_ms_per_request": cpu,
            "runs": {
                "baseline": [r.as_dict() for r in base_runs],
                "target": [r.as_dict() for r in target_runs],
            },
        }
        results.append(result)
        log(
            f"{case.name}: {result['rps']} req/s vs {result['baseline_rps']} "
            f"-> {result['ratio']}x; "
            f"p99 {result['p99_ms']} ms vs {result['baseline_p99_ms']} ms "
            f"-> {result['p99_ratio']}x; CPU ms/request app, postgres, wrk: "
            + ", ".join(f"{cpu['target'][k]} vs {cpu['baseline'][k]}" for k in cpu["target"])
            + (
                ""
                if result["valid"]
                else f"  INVALID: {errors} errors, {wraps} wraps, {baseline_errors} baseline errors"
            )
        )
        bench.procs.stop("web")
    bench.procs.stop("ceiling")
    return {
        "what": f"wrk -t2 -c{c.connections} -d{c.duration}s, {c.rounds} interleaved rounds "
        "(median), "
        "gunicorn with the Procfile's web flags for both apps, no Celery worker running",
        "results": results,
    }


# --- the receiver's view of a run -----------------------------------------------------------------


def receiver_records(bench: Bench, prefix: str, *, url: str | None = None) -> list[dict[str, Any]]:
    return list(http_json("GET", f"{url or bench.receiver_url}/_records?prefix={prefix}"))


def delivery_counts(records: list[dict[str, Any]], expected: int) -> dict[str, int]:
    unique = len(records)
    return {
        "expected": expected,
        "delivered": min(unique, expected),
        "lost": max(expected - unique, 0),
        "duplicates": sum(r["count"] - 1 for r in records),
        "unexpected": max(unique - expected, 0),
    }


def wait_for_deliveries(
    bench: Bench, prefix: str, expected: int, *, stall: float, limit: float
) -> list[dict[str, Any]]:
    """Poll the receiver until ``expected`` unique deliveries arrived under ``prefix``, the
    receiver got nothing new at all (any prefix: a backlog ahead of them still counts as
    progress) for ``stall`` seconds, or ``limit`` seconds passed. What has not arrived then is
    counted lost."""
    start = last_change = time.monotonic()
    seen = -1
    while True:
        records = receiver_records(bench, prefix)
        total = http_json("GET", f"{bench.receiver_url}/_stats")["requests"]
        if total != seen:
            seen, last_change = total, time.monotonic()
        now = time.monotonic()
        if len(records) >= expected or now - last_change > stall or now - start > limit:
            return records
        time.sleep(0.5)


# --- scenario: webhooks ---------------------------------------------------------------------------


def scenario_webhooks(bench: Bench) -> dict[str, Any]:
    from jobs.services import jobs_expire_stale

    c = bench.config
    rounds = []
    for number in range(c.webhook_rounds):
        bench.reset()
        client = api_client("Bench Webhooks")
        prefix = f"/w{number}/"
        subscribe(
            client.company,
            [f"{bench.receiver_url}{prefix}{i}" for i in range(c.webhook_endpoints)],
            ["*"],
        )
        job_pool(client.company, c.webhook_changes, status="processing", stale=True)
        expected = c.webhook_changes * c.webhook_endpoints
        started = time.perf_counter()
        expired = jobs_expire_stale()
        backlog_s = time.perf_counter() - started
        log(
            f"webhooks round {number + 1}: {expired} jobs expired in {backlog_s:.1f} s "
            f"-> {expected} deliveries queued; starting the worker"
        )
        worker_started = time.time()
        bench.start_worker()
        records = wait_for_deliveries(
            bench, prefix, expected, stall=c.webhook_stall, limit=max(600, expected)
        )
        time.sleep(2)  # late duplicates
        records = receiver_records(bench, prefix)
        bench.stop_worker()
        counts = delivery_counts(records, expected)
        arrivals = sorted(r["first_at"] for r in records)
        rate = (
            (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            if len(arrivals) > 1 and arrivals[-1] > arrivals[0]
            else None
        )
        bodies = http_json("GET", f"{bench.receiver_url}/_bodies?prefix={prefix}&limit={expected}")
        bodies_file = bench.workdir / f"bodies-{number}.json"
        bodies_file.write_text(json.dumps(bodies))
        raw = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    str(BENCH_DIR / "rawclient.py"),
                    f"{bench.receiver_url}/raw{number}/0",
                    str(bodies_file),
                    str(expected),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        one = {
            "deliveries_per_s": rnd(rate, 1),
            "raw_loop_per_s": rnd(raw["per_second"], 1),
            "ratio": ratio(rate, raw["per_second"]),
            "drained_s": rnd(arrivals[-1] - arrivals[0], 2) if arrivals else None,
            "worker_start_to_last_s": rnd(arrivals[-1] - worker_started, 2) if arrivals else None,
            "backlog_write_s": round(backlog_s, 2),
            **counts,
            "raw_non_2xx": raw["non_2xx"],
        }
        rounds.append(one)
        log(
            f"webhooks round {number + 1}: {one['deliveries_per_s']}/s "
            f"vs raw loop {one['raw_loop_per_s']}/s "
            f"-> {one['ratio']}x; delivered {counts['delivered']}, lost {counts['lost']}, "
            f"duplicates {counts['duplicates']}"
        )
    rate = median([r["deliveries_per_s"] for r in rounds if r["deliveries_per_s"]])
    raw_rate = median([r["raw_loop_per_s"] for r in rounds])
    return {
        "what": f"{c.webhook_changes} stale jobs expired (set-based) x {c.webhook_endpoints} "
        "endpoint(s) subscribed; the Procfile's worker and beat started afterwards drain the "
        "backlog to a local receiver answering 204; rate = deliveries between the first and the "
        "last arrival; baseline: bench/rawclient.py posting the same bodies, signed, with urllib3 "
        "on one keep-alive connection",
        "deliveries_per_s": rnd(rate, 1),
        "raw_loop_per_s": rnd(raw_rate, 1),
        "ratio": ratio(rate, raw_rate),
        "delivered": sum(r["delivered"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "duplicates": sum(r["duplicates"] for r in rounds),
        "rounds": rounds,
    }


# --- open-loop load -------------------------------------------------------------------------------


@dataclass
class Sent:
    scheduled: float  # wall clock the request was due
    latency_s: float  # from due to answered (queueing included: open loop)
    status: int
    job_id: str = ""
    created_at: float = 0.0


def open_loop(
    base: str, token: str, rate: float, duration: float, *, concurrency: int = 32
) -> list[Sent]:
    """POST /api/v1/jobs/ at a steady ``rate`` for ``duration`` seconds, whatever the answers
    take (open loop: a slow answer does not delay the next request)."""
    pool = urllib3.PoolManager(maxsize=concurrency, retries=False, timeout=urllib3.Timeout(60))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    count = max(int(rate * duration), 1)
    start = time.time() + 0.2
    due: queue.Queue[float] = queue.Queue()
    for i in range(count):
        due.put(start + i / rate)
    results: list[Sent] = []
    lock = threading.Lock()

    def sender() -> None:
        while True:
            try:
                when = due.get_nowait()
            except queue.Empty:
                return
            delay = when - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                response = pool.request(
                    "POST", f"{base}/api/v1/jobs/", body=b'{"type": "export"}', headers=headers
                )
                status, data = response.status, response.data
            except urllib3.exceptions.HTTPError:
                status, data = 0, b""
            sent = Sent(scheduled=when, latency_s=time.time() - when, status=status)
            if status == 201:
                body = json.loads(data)
                sent.job_id = body["id"]
                sent.created_at = datetime.fromisoformat(body["created_at"]).timestamp()
            with lock:
                results.append(sent)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def webhook_latencies(records: list[dict[str, Any]], sent: list[Sent]) -> tuple[list[float], int]:
    """Seconds from each job's commit (its created_at) to the first attempt of its webhook.

    A webhook that has not arrived yet counts as arriving now: its latency, and so the
    percentiles, are then lower bounds (the count of those is returned beside them).
    """
    now = time.time()
    first: dict[str, float] = {}
    for r in records:
        if r["events_id"] == "jobs.create":
            first[r["object_id"]] = min(first.get(r["object_id"], r["first_at"]), r["first_at"])
    latencies = [first.get(s.job_id, now) - s.created_at for s in sent if s.job_id]
    return latencies, sum(1 for s in sent if s.job_id and s.job_id not in first)


def load_summary(sent: list[Sent], duration: float) -> dict[str, Any]:
    ok = [s for s in sent if s.status == 201]
    lat = [s.latency_s * 1000 for s in ok]
    # answered per second, from the first request due to the last answer (a server that cannot
    # keep up stretches the span beyond the planned duration)
    span = max((s.scheduled + s.latency_s for s in sent), default=0) - min(
        (s.scheduled for s in sent), default=0
    )
    return {
        "requests": len(sent),
        "ok": len(ok),
        "achieved_per_s": rnd(len(ok) / max(span, duration), 1),
        "post_p50_ms": rnd(percentile(lat, 50), 1),
        "post_p99_ms": rnd(percentile(lat, 99), 1),
    }


def webhook_summary(latencies: list[float], missing: int) -> dict[str, Any]:
    return {
        "webhook_p50_s": rnd(percentile(latencies, 50)),
        "webhook_p99_s": rnd(percentile(latencies, 99)),
        "webhook_max_s": rnd(max(latencies) if latencies else None),
        # webhooks still missing when the wait ended count with the time waited: lower bounds
        "not_delivered_in_wait": missing,
        "lower_bound": missing > 0,
    }


# --- scenario: latency ----------------------------------------------------------------------------


def scenario_latency(bench: Bench) -> dict[str, Any]:
    c = bench.config
    runs = []
    for rate in c.latency_rates:
        bench.reset()
        client = api_client("Bench Latency")
        prefix = f"/l{rate}/"
        subscribe(client.company, [f"{bench.receiver_url}{prefix}0"], ["jobs.create"])
        bench.start_web()
        bench.start_worker()
        warm = open_loop(bench.web_url, client.token, 5, 1)
        wait_for_deliveries(bench, prefix, len(warm), stall=10, limit=30)
        http_json("POST", f"{bench.receiver_url}/_reset")
        log(f"latency: POST /jobs/ at {rate}/s for {c.latency_duration} s")
        sent = open_loop(bench.web_url, client.token, rate, c.latency_duration)
        expected = sum(1 for s in sent if s.job_id)
        records = wait_for_deliveries(
            bench, prefix, expected, stall=c.webhook_stall, limit=c.webhook_wait
        )
        time.sleep(1)
        records = receiver_records(bench, prefix)
        latencies, missing = webhook_latencies(records, sent)
        run = {
            "rate_per_s": rate,
            **load_summary(sent, c.latency_duration),
            **webhook_summary(latencies, missing),
            **delivery_counts(records, expected),
        }
        runs.append(run)
        log(
            f"latency at {rate}/s (achieved {run['achieved_per_s']}/s): commit -> first attempt "
            f"p50 {run['webhook_p50_s']} s, p99 {run['webhook_p99_s']} s; "
            f"delivered {run['delivered']}, "
            f"lost {run['lost']}, duplicates {run['duplicates']}"
        )
        for name in ("web", "worker", "wide", "beat"):
            bench.procs.stop(name)
    return {
        "what": "open-loop POST /api/v1/jobs/ (1 endpoint subscribed to jobs.create) through the "
        "Procfile's web, worker and beat; latency from the job's created_at (inside the committing "
        "transaction) to the receiver's first arrival of its webhook",
        "runs": runs,
    }


# --- scenario: noisy neighbour --------------------------------------------------------------------


def _noisy_phase(bench: Bench, phase: str, number: int) -> dict[str, Any]:
    """One phase of the noisy neighbour (fresh database): B's samples, and A's if A ran."""
    c = bench.config
    bench.reset()
    a = api_client("Bench Noisy A")
    b = api_client("Bench Noisy B")
    subscribe(a.company, [f"{bench.receiver_a_url}/a/{i}" for i in range(c.noisy_endpoints)], ["*"])
    subscribe(b.company, [f"{bench.receiver_url}/b/0"], ["jobs.create"])
    bench.start_web()
    bench.start_worker()
    warm = open_loop(bench.web_url, b.token, 5, 1)
    wait_for_deliveries(bench, "/b/", len(warm), stall=10, limit=30)
    bench.reset_receivers()
    log(
        f"noisy neighbour round {number + 1}, {phase}: B posts {c.noisy_rate_b}/s for "
        f"{c.noisy_duration} s"
        + (f", A ({c.noisy_endpoints} endpoints) {c.noisy_rate_a}/s" if phase == "with_a" else "")
    )
    a_sent: list[Sent] = []
    a_thread = None
    burners: list[subprocess.Popen[bytes]] = []
    if phase == "with_a" and c.noisy_a != "jobtrail":
        burners = _burners(c)
    elif phase == "with_a":
        a_thread = threading.Thread(
            target=lambda token=a.token, out=a_sent: out.extend(
                open_loop(bench.web_url, token, c.noisy_rate_a, c.noisy_duration)
            ),
            daemon=True,
        )
        a_thread.start()
    cpu_before = host_cpu()
    b_sent = open_loop(bench.web_url, b.token, c.noisy_rate_b, c.noisy_duration)
    if a_thread is not None:
        a_thread.join()
    cpu_after = host_cpu()
    burned = _stop_burners(burners)
    expected = sum(1 for s in b_sent if s.job_id)
    records = wait_for_deliveries(
        bench, "/b/", expected, stall=c.webhook_stall, limit=c.webhook_wait
    )
    latencies, missing = webhook_latencies(records, b_sent)
    a_all = receiver_records(bench, "/a/", url=bench.receiver_a_url) if phase == "with_a" else []
    if os.environ.get("BENCH_RAW"):
        raw = {
            "b": [
                [s.scheduled, s.latency_s, lat]
                for s, lat in zip([s for s in b_sent if s.job_id], latencies, strict=True)
            ],
            "a": [[s.scheduled, s.latency_s] for s in a_sent],
            "a_first_at": sorted(r["first_at"] for r in a_all),
        }
        c.out.mkdir(parents=True, exist_ok=True)
        (c.out / f"noisy-raw-{phase}-{number + 1}.json").write_text(json.dumps(raw))
    result: dict[str, Any] = {
        "b_sent": b_sent,
        "latencies": latencies,
        "missing": missing,
        "summary": {
            **load_summary(b_sent, c.noisy_duration),
            **webhook_summary(latencies, missing),
            "host_cpu_cores": cpu_cores(cpu_before, cpu_after),
        },
        "burned_cpu_s": burned,
        "counts": delivery_counts(records, expected),
        "a_sent": a_sent,
        "a_achieved_per_s": load_summary(a_sent, c.noisy_duration)["achieved_per_s"],
        "a_records": len(a_all),
    }
    summary = result["summary"]
    log(
        f"noisy neighbour round {number + 1}, {phase}: B POST p99 {summary['post_p99_ms']} ms, "
        f"B webhook p99 {summary['webhook_p99_s']} s, B lost {result['counts']['lost']}"
    )
    for name in ("web", "worker", "wide", "beat"):
        bench.procs.stop(name)
    return result


def _burners(c: Config) -> list[subprocess.Popen[bytes]]:
    """bench/burn.py in place of company A: A's CPU at A's arrivals, one process per core."""
    cores = os.cpu_count() or 1
    idle = UNDER_SCHED_IDLE if c.noisy_a == "cpu-idle" else []
    argv = [sys.executable, str(BENCH_DIR / "burn.py")]
    return [
        subprocess.Popen([*idle, *argv, str(c.noisy_a_cpu / cores), str(1 / c.noisy_rate_a)])
        for _ in range(cores)
    ]


def _stop_burners(burners: list[subprocess.Popen[bytes]]) -> float | None:
    """Stop the burners; return the CPU seconds they used (None if none ran)."""
    if not burners:
        return None
    used = 0.0
    for burner in burners:
        burner.kill()
        _, _, usage = os.wait4(burner.pid, 0)  # the burner's own (chrt execs it)
        burner.returncode = -signal.SIGKILL
        used += usage.ru_utime + usage.ru_stime
    return round(used, 2)


def host_cpu() -> tuple[float, float] | None:
    """(monotonic time, CPU seconds the host has been busy), or None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle and iowait
    return time.monotonic(), (sum(fields[:8]) - idle) / CLOCK_TICKS


def cpu_cores(before: tuple[float, float] | None, after: tuple[float, float] | None) -> Any:
    """The host's CPU in use between two ``host_cpu()`` readings, in cores."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round((after[1] - before[1]) / (after[0] - before[0]), 2)


def scenario_noisy(bench: Bench) -> dict[str, Any]:
    """B alone and B beside A, alternated ``noisy_rounds`` times (the machine's noise falls on
    both); each phase's percentiles are over every round's samples pooled."""
    c = bench.config
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "with_a": []}
    for number in range(c.noisy_rounds):
        for phase in ("alone", "with_a"):
            runs[phase].append(_noisy_phase(bench, phase, number))
    phases: dict[str, Any] = {}
    for phase, results in runs.items():
        b_sent = [s for r in results for s in r["b_sent"]]
        counts = {key: sum(r["counts"][key] for r in results) for key in results[0]["counts"]}
        rounds = [r["summary"] for r in results]
        phases[phase] = {
            "b": {
                **load_summary(b_sent, c.noisy_duration),
                # each round's own rate (the pooled samples span the pauses between rounds)
                "achieved_per_s": median([r["achieved_per_s"] for r in rounds]),
                **webhook_summary(
                    [lat for r in results for lat in r["latencies"]],
                    sum(r["missing"] for r in results),
                ),
                **counts,
                "host_cpu_cores": rounded(
                    median([r["host_cpu_cores"] for r in rounds if r["host_cpu_cores"] is not None])
                ),
            },
            "rounds": rounds,
        }
        if phase == "with_a" and c.noisy_a != "jobtrail":
            phases[phase]["a"] = {
                "burned_cpu_s_per_round": [r["burned_cpu_s"] for r in results],
                "burned_cpu_s_per_arrival": rnd(
                    sum(r["burned_cpu_s"] for r in results)
                    / (c.noisy_rounds * c.noisy_duration * c.noisy_rate_a),
                    2,
                ),
            }
        elif phase == "with_a":
            a_sent = [s for r in results for s in r["a_sent"]]
            phases[phase]["a"] = {
                **load_summary(a_sent, c.noisy_duration),
                "achieved_per_s": median([r["a_achieved_per_s"] for r in results]),
                "a_deliveries_received": sum(r["a_records"] for r in results),
            }
    alone, noisy = phases["alone"]["b"], phases["with_a"]["b"]
    a_is = (
        f"company A: {c.noisy_endpoints} endpoints subscribed to every event, POST /jobs/ at "
        f"{c.noisy_rate_a}/s"
        if c.noisy_a == "jobtrail"
        else f"company A replaced by CPU alone (the machine's floor): {c.noisy_a_cpu} "
        f"core-seconds of Python at {c.noisy_rate_a}/s over {os.cpu_count()} processes"
        + (" under SCHED_IDLE" if c.noisy_a == "cpu-idle" else "")
    )
    return {
        "what": f"{a_is}; company B: 1 endpoint, POST /jobs/ at {c.noisy_rate_b}/s for "
        f"{c.noisy_duration} s; B alone and beside A alternated {c.noisy_rounds} times (fresh "
        "database each), percentiles over the rounds' samples pooled"
        + (", A's webhooks to a receiver under SCHED_IDLE" if c.noisy_a_receiver == "idle" else "")
        + "".join(f", app {k}={v}" for k, v in sorted(c.app_settings.items())),
        "a": c.noisy_a,
        "post_p99_ratio": ratio(noisy["post_p99_ms"], alone["post_p99_ms"]),
        "webhook_p99_ratio": ratio(noisy["webhook_p99_s"], alone["webhook_p99_s"]),
        **phases,
    }


# --- results --------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "http": scenario_http,
    "webhooks": scenario_webhooks,
    "latency": scenario_latency,
    "noisy": scenario_noisy,
}


def write_result(config: Config, name: str, result: dict[str, Any], seconds: float) -> Path:
    config.out.mkdir(parents=True, exist_ok=True)
    report = {
        "scenario": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "quick": config.quick,
        "took_s": round(seconds, 1),
        **result,
    }
    path = config.out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,}{suffix}" if isinstance(value, int) else f"{value}{suffix}"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*names: str) -> list[str]:
    return [_row(*names), _row(*("---" for _ in names))]


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def results_table(out: Path) -> str:
    """The Markdown tables of bench/results/README.md, from the JSON files there."""
    parts = [
        "# Benchmark results\n",
        "Generated by `make bench` (bench/run.py) from the JSON files here; "
        "`bench/scale.py` writes `scale-*.json`.\n",
    ]
    d = _load(out, "http")
    if d:
        parts += [
            f"\n## HTTP hot paths ({d['when']}, {d['commit']})\n\n{d['what']}.\n",
            *_header(
                "path",
                "baseline",
                "baseline req/s",
                "req/s",
                "ratio",
                "baseline p99",
                "p99",
                "p99 ratio",
            ),
        ]
        for r in d["results"]:
            parts.append(
                _row(
                    f"`{r['name']}`" + ("" if r["valid"] else " (invalid run: errors)"),
                    r["baseline"],
                    _fmt(r["baseline_rps"]),
                    _fmt(r["rps"]),
                    f"**{_fmt(r['ratio'], X)}**",
                    _fmt(r["baseline_p99_ms"], " ms"),
                    _fmt(r["p99_ms"], " ms"),
                    _fmt(r["p99_ratio"], X),
                )
            )
    d = _load(out, "webhooks")
    if d:
        parts += [
            f"\n## Webhook throughput ({d['when']}, {d['commit']})\n\n{d['what']}.\n",
            *_header("deliveries/s", "raw loop/s", "ratio", "delivered", "lost", "duplicates"),
            _row(
                _fmt(d["deliveries_per_s"]),
                _fmt(d["raw_loop_per_s"]),
                f"**{_fmt(d['ratio'], X)}**",
                _fmt(d["delivered"]),
                _fmt(d["lost"]),
                _fmt(d["duplicates"]),
            ),
        ]
    d = _load(out, "latency")
    if d:
        parts += [
            f"\n## Commit → first webhook attempt ({d['when']}, {d['commit']})\n\n{d['what']}.\n",
            *_header(
                "target rate",
                "achieved",
                "POST p99",
                "webhook p50",
                "webhook p99",
                "delivered",
                "lost",
                "duplicates",
            ),
        ]
        for r in d["runs"]:
            parts.append(
                _row(
                    f"{r['rate_per_s']}/s",
                    _fmt(r["achieved_per_s"], "/s"),
                    _fmt(r["post_p99_ms"], " ms"),
                    _fmt(r["webhook_p50_s"], " s"),
                    f"**{'≥ ' if r['lower_bound'] else ''}{_fmt(r['webhook_p99_s'], ' s')}**",
                    _fmt(r["delivered"]),
                    _fmt(r["lost"]),
                    _fmt(r["duplicates"]),
                )
            )
    d = _load(out, "noisy")
    if d:
        parts += [
            f"\n## Noisy neighbour ({d['when']}, {d['commit']})\n\n{d['what']}.\n",
            *_header(
                "company B",
                "POST p50",
                "POST p99",
                "webhook p50",
                "webhook p99",
                "host CPU",
                "delivered",
                "lost",
                "duplicates",
            ),
        ]
        for phase, label in (("alone", "alone"), ("with_a", "beside A")):
            b = d[phase]["b"]
            parts.append(
                _row(
                    label,
                    _fmt(b["post_p50_ms"], " ms"),
                    _fmt(b["post_p99_ms"], " ms"),
                    ("≥ " if b["lower_bound"] else "") + _fmt(b["webhook_p50_s"], " s"),
                    ("≥ " if b["lower_bound"] else "") + _fmt(b["webhook_p99_s"], " s"),
                    _fmt(b.get("host_cpu_cores"), " cores"),
                    _fmt(b["delivered"]),
                    _fmt(b["lost"]),
                    _fmt(b["duplicates"]),
                )
            )
        parts.append(
            _row(
                "**ratio**",
                "",
                f"**{_fmt(d['post_p99_ratio'], X)}**",
                "",
                f"**{_fmt(d['webhook_p99_ratio'], X)}**",
                "",
                "",
                "",
                "",
            )
        )
    for path in sorted(out.glob("scale-*.json")):
        parts += scale_table(path)
    return "\n".join(parts) + "\n"


def scale_table(path: Path) -> list[str]:
    d = json.loads(path.read_text())
    sizes = d["sizes"]
    parts = [
        f"\n## At scale: `{path.name}` ({d['when']}, {d['commit']}, took {d['took_s']} s)\n",
        f"`bench/scale.py`, {sizes['jobs']:,} jobs built set-based "
        f"(in {d['populate']['took_s']} s).\n",
    ]
    if len(d.get("runs", [])) > 1:
        parts.append(
            "Measured in "
            + "; ".join(
                f"{run['when']} ({run['commit']}): {', '.join(run['parts'])} in {run['took_s']} s"
                for run in d["runs"]
            )
            + ".\n"
        )
    parts += _header("what", "baseline", "measured", "ratio")
    if e := d.get("expiry"):
        parts.append(
            _row(
                f"expire {e['stale_jobs']:,} stale jobs among {sizes['jobs']:,}",
                f"raw SQL UPDATE: {e['raw_update_s']} s",
                f"{e['expire_s']} s",
                f"**{_fmt(e['ratio'], X)}**",
            )
        )
        if "raw_update_with_events_s" in e:
            parts.append(
                _row(
                    "the same expiry",
                    f"raw UPDATE + a bare event per job: {e['raw_update_with_events_s']} s",
                    f"{e['expire_s']} s",
                    _fmt(e["ratio_with_events"], X),
                )
            )
        if "relay_s" in e:
            parts.append(
                _row(
                    "then the relay fans its events out (worker; not in the ratio)",
                    "",
                    f"{e['relayed_events']:,} events → {e['deliveries']:,} deliveries "
                    f"in {e['relay_s']} s",
                    "",
                )
            )
    if a := d.get("admin"):
        for label, view in a["views"].items():
            sql = f" (SQL {view['sql_ms_small']} → {view['sql_ms']} ms)" if "sql_ms" in view else ""
            parts.append(
                _row(
                    f"admin {label}",
                    f"at {a['jobs_small']:,} jobs: {view['ms_small']} ms",
                    f"{view['ms']} ms{sql}",
                    f"**{_fmt(view['ratio'], X)}**"
                    if (view["ratio"] or 0) > 1.5
                    else _fmt(view["ratio"], X),
                )
            )
    if r := d.get("read"):
        sql = (
            f"; its {r['read_queries']} SQL statements "
            + (f"{r['read_sql_ms_before']} → " if "read_sql_ms_before" in r else "")
            + f"{r['read_sql_ms']} ms"
            + (", reading push results" if r["read_touches_push_results"] else ", no push result")
            if "read_sql_ms" in r
            else ""
        )
        parts.append(
            _row(
                f"GET a job while another holds {r['push_results']:,} push results",
                f"before those rows: {r['read_ms_before']} ms",
                f"{r['read_ms']} ms (worst {r['read_ms_worst']} ms){sql}",
                _fmt(ratio(r["read_ms"], r["read_ms_before"]), X),
            )
        )
    if r := d.get("report"):
        parts.append(
            _row(
                f"CSV report of {r['rows']:,} push results",
                f"COPY … CSV: {r['copy_rows_per_s']:,} rows/s",
                f"{r['rows_per_s']:,} rows/s, peak RSS {r['peak_rss_mb']} MB",
                _fmt(ratio(r["rows_per_s"], r["copy_rows_per_s"]), X),
            )
        )
    return parts


# --- main -----------------------------------------------------------------------------------------


def preflight(config: Config) -> None:
    if (
        "http" in config.scenarios
        and subprocess.run(["which", "wrk"], capture_output=True).returncode
    ):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    import psycopg
    import redis

    try:
        psycopg.connect(config.db_url("postgres"), connect_timeout=5).close()
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL at {config.pg} is not reachable: {exc}") from exc
    try:
        redis.Redis.from_url(config.redis, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at {config.redis} is not reachable: {exc}") from exc


@contextmanager
def bench_environment(config: Config) -> Iterator[Bench]:
    bench = Bench(config)
    try:
        bench.create_template()
        os.environ.update(bench.app_env())
        bench.pg_admin(
            f'DROP DATABASE IF EXISTS "{bench.db}" WITH (FORCE)',
            f'CREATE DATABASE "{bench.db}" TEMPLATE "{bench.template}"',
        )
        import django

        django.setup()
        bench.start_receiver()
        yield bench
    except BaseException:
        log(f"logs of the processes: {bench.workdir}")
        raise
    finally:
        bench.procs.stop_all()
        if not os.environ.get("BENCH_KEEP_DB"):
            with suppress(Exception):
                bench.drop_databases()


def main() -> int:
    config = Config()
    if "--table" in sys.argv:  # only regenerate README.md from the JSON files (e.g. after scale.py)
        (config.out / "README.md").write_text(results_table(config.out))
        return 0
    preflight(config)
    log(
        f"scenarios: {', '.join(config.scenarios)}{' (quick)' if config.quick else ''}; "
        f"results in {config.out}"
    )
    with bench_environment(config) as bench:
        for name in config.scenarios:
            started = time.perf_counter()
            result = RUNNERS[name](bench)
            path = write_result(config, name, result, time.perf_counter() - started)
            log(f"{name} done in {time.perf_counter() - started:.0f} s -> {path}")
    (config.out / "README.md").write_text(results_table(config.out))
    print(results_table(config.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
