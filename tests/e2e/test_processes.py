"""`make run`'s processes start quietly and stop gracefully.

Each test runs a copy of the source tree in a temporary folder on the embedded defaults (SQLite
and the filesystem broker under the copy's var/), with a .env like the one `make run` writes, so
nothing touches the project's own var/ or .env.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.e2e.stack import free_port, wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Lines that must never appear in the logs of a start and a graceful stop.
NOISE = re.compile(r"ERROR|CRITICAL|Traceback|No hostname was supplied|signal 15|SIGKILL")
# Generous: a graceful stop takes a few seconds; this only catches a stop that never comes.
EXIT_BOUND = 60


@pytest.fixture(scope="module")
def app_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated copy of the source tree with the .env `make run` would write."""
    copy = tmp_path_factory.mktemp("jobtrail")
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ROOT.glob("*/__init__.py"):  # config and the apps
        if package.parent.name not in {"tests", "bench"}:
            shutil.copytree(package.parent, copy / package.parent.name, ignore=ignore)
    for name in ("manage.py", "Procfile"):
        shutil.copy2(ROOT / name, copy / name)
    (copy / ".env").write_text(
        "DJANGO_DEBUG=1\n"
        "DJANGO_SECRET_KEY=test-only-processes-0123456789abcdefghijklmnopqrstuvwxyz\n"
        "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS=1\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=copy,
        env=process_env(),
        check=True,
        timeout=300,
    )
    return copy


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a developer's shell: no test settings, no service URLs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_"))
        # the test run's metrics folder too: `make run` empties the copy's own var/prometheus
        and k
        not in {"DATABASE_URL", "CACHE_URL", "PYTEST_CURRENT_TEST", "PROMETHEUS_MULTIPROC_DIR"}
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class Output:
    """Collect a process's combined output line by line, as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def noise(self) -> list[str]:
        return [line for line in self.lines if NOISE.search(line)]


def start(args: list[str], cwd: Path, **env: str) -> Output:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=process_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    return Output(proc)


def wait_for_exit(out: Output) -> int:
    try:
        return out.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(out.proc.pid, signal.SIGKILL)
        out.proc.wait()
        pytest.fail(f"did not exit by itself within {EXIT_BOUND}s:\n{out.text}")


@pytest.fixture
def running() -> Iterator[list[Output]]:
    """Processes a test started; whatever still runs at the end is killed."""
    started: list[Output] = []
    yield started
    for out in started:
        if out.proc.poll() is None:
            os.killpg(out.proc.pid, signal.SIGKILL)
            out.proc.wait()
        # honcho starts each Procfile process in a session of its own
        for pid in re.findall(r"started \(pid=(\d+)\)", out.text):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)


def web_answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_make_run_processes_stop_gracefully_on_ctrl_c(
    app_copy: Path, running: list[Output]
) -> None:
    port = free_port()
    stale = app_copy / "var" / "prometheus" / "counter_1.db"  # an earlier run's counts
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"old")
    # What `make run` runs once the database is migrated: honcho with the Procfile.
    honcho = start(
        [sys.executable, "-m", "config.run_procfile"],
        app_copy,
        JOBTRAIL_PORT=str(port),
        JOBTRAIL_METRICS_TOKEN="processes-metrics-token",
    )
    running.append(honcho)
    wait_until(lambda: web_answers(port), 90, f"web to answer /healthz\n{honcho.text}")
    assert not stale.exists()  # emptied before the processes started
    scraped = requests.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Authorization": "Bearer processes-metrics-token"},
        timeout=10,
    )
    assert scraped.status_code == 200, scraped.text
    assert "jobtrail_backlog_up 1.0" in scraped.text
    for worker in ("worker", "wide"):
        ready = re.compile(rf"^\S+ {worker}\.1 +\|.* ready\.$", re.MULTILINE)
        wait_until(
            lambda pattern=ready: pattern.search(honcho.text),
            90,
            f"{worker} to be ready\n{honcho.text}",
        )
    wait_until(lambda: "beat: Starting" in honcho.text, 90, f"beat to start\n{honcho.text}")
    pids = {
        name: int(pid) for name, pid in re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", honcho.text)
    }
    wait_for_pool(pids["worker"], honcho)
    # the wide lane's worker runs under SCHED_IDLE (JOBTRAIL_WIDE_LANE_CPU), the other one not
    assert os.sched_getscheduler(pids["wide"]) == os.SCHED_IDLE
    assert os.sched_getscheduler(pids["worker"]) == os.SCHED_OTHER

    # Ctrl-C: the terminal sends SIGINT to the foreground process group.
    os.killpg(honcho.proc.pid, signal.SIGINT)
    returncode = wait_for_exit(honcho)

    assert returncode == 130, honcho.text  # honcho's exit status after SIGINT
    for process in ("web.1", "worker.1", "wide.1", "beat.1"):
        assert re.search(rf"{re.escape(process)} stopped \(rc=0\)", honcho.text), honcho.text
    assert honcho.noise() == [], honcho.text


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("process", id="sigterm-to-the-worker"),
        # how honcho and supervisord's stopasgroup stop a program
        pytest.param("group", id="sigterm-to-its-process-group"),
    ],
)
def test_prefork_worker_stops_gracefully_on_sigterm(
    app_copy: Path, running: list[Output], target: str
) -> None:
    worker_args = ["worker", "--loglevel", "INFO", "--pool", "prefork", "--concurrency", "2"]
    # one worker under JOBTRAIL_WORKER_CPU=idle, the other with the default policy and a nice
    idle = target == "group"
    cpu = {"JOBTRAIL_WORKER_CPU": "idle"} if idle else {"JOBTRAIL_WORKER_NICE": "7"}
    worker = start(
        [str(BIN / "celery"), "-A", "config", *worker_args, "--hostname", f"sigterm-{target}@%h"],
        app_copy,
        **cpu,
    )
    running.append(worker)
    wait_until(lambda: "ready." in worker.text, 90, f"the worker to be ready\n{worker.text}")
    wait_for_pool(worker.proc.pid, worker)
    pool = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for pid in (worker.proc.pid, *map(int, pool)):
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        if idle:
            # the worker, its pool and every thread they run are SCHED_IDLE
            assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
        else:
            # JOBTRAIL_WORKER_NICE: the worker and its pool lower their CPU priority by that much
            assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_OTHER}
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + 7, 19)

    if target == "group":
        os.killpg(worker.proc.pid, signal.SIGTERM)
    else:
        os.kill(worker.proc.pid, signal.SIGTERM)
    returncode = wait_for_exit(worker)

    assert returncode == 0, worker.text
    assert "Warm shutdown" in worker.text, worker.text
    assert worker.noise() == [], worker.text


def wait_for_pool(worker_pid: int, out: Output) -> None:
    """Wait until the worker's two pool processes have started up.

    A started pool process has left the worker's process group (config.celery_app), so a
    signal sent to that group reaches the worker alone.
    """

    def started() -> bool:
        path = Path(f"/proc/{worker_pid}/task/{worker_pid}/children")
        pool = [int(p) for p in path.read_text().split()] if path.exists() else []
        try:
            return len(pool) == 2 and all(os.getpgid(p) == p for p in pool)
        except ProcessLookupError:
            return False

    wait_until(started, 60, f"two started pool processes in groups of their own\n{out.text}")
