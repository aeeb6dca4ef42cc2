"""The README's curl walkthrough, run as written against a live stack (keeps the README true)."""

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.stack import ROOT, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Walkthrough with curl", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_readme_walkthrough_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    """Twice, as a newcomer does once it worked (the second run met the first's job codes and
    keys: replays, 409s, and a crash in the json helper)."""
    script = _walkthrough()
    assert "API=http://127.0.0.1:8000" in script
    script = script.replace("API=http://127.0.0.1:8000", f"API={stack.api}")
    jobs = []
    for _ in range(2):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        job = next(line for line in lines if line.startswith("job "))
        assert re.match(r"^job [0-9a-f-]{36}$", job)
        jobs.append(job)
        for expected in ["processing", "success", "completed", '"SUCCESSFUL"', "job_finished"]:
            assert any(expected in line for line in lines), (expected, result.stdout)
        # the integration role and the push ingest URL (issue 12)
        assert "job_finished" in lines and "integration" in lines
        assert lines[lines.index("integration") + 1] == "true"  # the new job's delivery: a hand-off
        ingest = next(line for line in lines if "/api/v1/push-ingest/" in line)
        assert re.match(r"^http://127\.0\.0\.1:8000/api/v1/push-ingest/[0-9a-f-]{36}/$", ingest)
        assert "push_communication_id" in lines
        assert lines[-1] == "attached"
        time.sleep(1.1)  # RUN is the time in seconds
    assert jobs[0] != jobs[1]  # each run its own job
