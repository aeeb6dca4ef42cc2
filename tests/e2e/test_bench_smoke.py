"""`make bench` in quick mode, so the harness cannot rot: every scenario runs on tiny sizes.

No timing is asserted (timings belong to bench/); the test checks that each scenario ran valid
requests and that every webhook the harness expected arrived exactly once.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.stack import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _postgres_server() -> str:
    s = settings.DATABASES["default"]
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    broker = Stack(workdir=tmp_path)  # a private redis-server: the harness flushes its database
    broker.start_broker()
    try:
        yield broker.broker_url
    finally:
        broker.stop_broker()


def _bench_quick(out: Path, redis_url: str, **extra: str) -> None:
    """Run bench/run.py in quick mode into ``out``, with ``extra`` BENCH_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_", "DATABASE_URL", "BENCH"))
    }
    env.update(
        BENCH_QUICK="1",
        BENCH_OUT=str(out),
        BENCH_PG=_postgres_server(),
        BENCH_DB_PREFIX=f"{settings.DATABASES['default']['NAME']}_bench",
        BENCH_REDIS_URL=redis_url,
        **extra,
    )
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]


def test_make_bench_quick_runs_every_scenario(tmp_path: Path, redis_url: str) -> None:
    if shutil.which("wrk") is None and not os.environ.get("CI"):
        pytest.skip("needs wrk: apt-get install wrk")  # CI installs it (.ci/run): fails there
    out = tmp_path / "results"
    _bench_quick(out, redis_url)

    http = json.loads((out / "http.json").read_text())
    assert len(http["results"]) == 6
    for result in http["results"]:
        assert result["valid"], result  # every request answered 2xx, no one-shot pool reused
        assert result["rps"] and result["baseline_rps"], result

    webhooks = json.loads((out / "webhooks.json").read_text())
    for counts in webhooks["rounds"]:
        assert counts["expected"] > 0
        assert (counts["delivered"], counts["lost"], counts["duplicates"]) == (
            counts["expected"],
            0,
            0,
        ), counts
        assert counts["raw_non_2xx"] == 0

    latency = json.loads((out / "latency.json").read_text())
    for latency_run in latency["runs"]:
        assert latency_run["ok"] == latency_run["requests"] > 0, latency_run
        assert latency_run["lost"] == latency_run["duplicates"] == 0, latency_run

    noisy = json.loads((out / "noisy.json").read_text())
    assert noisy["a"] == "jobtrail"
    for phase in ("alone", "with_a"):
        b = noisy[phase]["b"]
        assert b["ok"] == b["requests"] > 0, b
        assert b["lost"] == b["duplicates"] == 0, b
    assert noisy["with_a"]["a"]["ok"] > 0

    table = (out / "README.md").read_text()
    assert "## HTTP hot paths" in table and "## Noisy neighbour" in table


def test_the_noisy_neighbours_floor_replaces_company_a_by_cpu_bursts(
    tmp_path: Path, redis_url: str
) -> None:
    """BENCH_NOISY_A=cpu-idle: A is bench/burn.py under SCHED_IDLE, B is measured as ever."""
    out = tmp_path / "results"

    _bench_quick(out, redis_url, BENCH="noisy", BENCH_NOISY_A="cpu-idle")

    noisy = json.loads((out / "noisy.json").read_text())
    assert noisy["a"] == "cpu-idle"
    assert "the machine's floor" in noisy["what"] and "SCHED_IDLE" in noisy["what"]
    burned = noisy["with_a"]["a"]["burned_cpu_s_per_round"]
    assert burned and all(cpu > 0 for cpu in burned), burned  # the burners ran, and were reaped
    assert not (out / "http.json").exists()  # only the scenario asked for
    for phase in ("alone", "with_a"):
        b = noisy[phase]["b"]
        assert b["ok"] == b["requests"] > 0, b
        assert b["lost"] == b["duplicates"] == 0, b
        assert b["host_cpu_cores"] is not None and b["host_cpu_cores"] > 0, b
    assert "| host CPU |" in (out / "README.md").read_text()
