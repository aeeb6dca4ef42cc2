"""The test settings clean up after themselves."""

import os
import subprocess
import sys
from pathlib import Path

from tests.live import ROOT


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "JOBTRAIL_TEST_BROKER_DIR"))
    }
    env.update(TMPDIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings_test", **extra)
    return env


FOLDER = (
    "from django.conf import settings\n"
    "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in'])\n"
)


def test_the_throwaway_broker_folder_is_removed_at_exit(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    script = (
        "import os\n"
        "from django.conf import settings\n"
        "folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in']\n"
        "assert os.path.isdir(folder), folder\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    raise SystemExit(0)  # a forked child's exit leaves its parent's folder alone\n"
        "os.waitpid(pid, 0)\n"
        "assert os.path.isdir(folder), 'removed by the child'\n"
        "print(folder)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("jobtrail-test-broker-")
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_child_process_uses_its_makers_folder_and_makes_none(tmp_path: Path) -> None:
    maker = tmp_path / "jobtrail-test-broker-1-abc"
    maker.mkdir()
    env = _clean_env(tmp_path, JOBTRAIL_TEST_BROKER_DIR=str(maker))
    done = subprocess.run(
        [sys.executable, "-c", FOLDER], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(maker)
    assert sorted(tmp_path.iterdir()) == [maker]  # pid 1 lives: its folder stays


def test_a_folder_whose_maker_was_killed_is_swept(tmp_path: Path) -> None:
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    left = tmp_path / f"jobtrail-test-broker-{killed.pid}-xyz"
    left.mkdir()
    (left / "queued.msg").write_text("{}")

    done = subprocess.run(
        [sys.executable, "-c", FOLDER],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    assert not left.exists()
    assert list(tmp_path.iterdir()) == []  # and the new one is removed at exit
