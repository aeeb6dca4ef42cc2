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
        if not k.startswith(("DJANGO_", "CELERY_", "JOBTRAIL_TEST_BROKER_DIR", "PYTEST_XDIST"))
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


BROKER = "from django.conf import settings\nprint(settings.CELERY_BROKER_URL)\n"


def _settings_in_a_process(
    tmp_path: Path, script: str, *, under_pytest: bool, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a new interpreter on the test settings, as a pytest process (pytest
    imported first) or as one a test starts."""
    return subprocess.run(
        [sys.executable, "-c", "import pytest\n" * under_pytest + script],
        cwd=ROOT,
        env=_clean_env(tmp_path, **extra),
        capture_output=True,
        text=True,
    )


def _broker_url(tmp_path: Path, *, under_pytest: bool, **extra: str) -> str:
    done = _settings_in_a_process(tmp_path, BROKER, under_pytest=under_pytest, **extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_each_xdist_worker_has_its_own_redis_database(tmp_path: Path) -> None:
    redis = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/4"}
    gw0 = _broker_url(tmp_path, under_pytest=True, PYTEST_XDIST_WORKER="gw0", **redis)
    gw1 = _broker_url(tmp_path, under_pytest=True, PYTEST_XDIST_WORKER="gw1", **redis)

    assert (gw0, gw1) == ("redis://127.0.0.1:6379/5", "redis://127.0.0.1:6379/6")
    # a process a test starts (no pytest in it) keeps the broker it was given
    child = _broker_url(tmp_path, under_pytest=False, PYTEST_XDIST_WORKER="gw1", **redis)
    assert child == "redis://127.0.0.1:6379/4"
    # and without xdist the URL is as set
    assert _broker_url(tmp_path, under_pytest=True, **redis) == "redis://127.0.0.1:6379/4"


FOLDERS = (
    "import os\n"
    "from django.conf import settings\n"
    "broker = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get('data_folder_in', '')\n"
    "print(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
    "print(broker)\n"
    "print(os.environ['CELERY_BROKER_URL'])\n"
)


def test_an_xdist_worker_keeps_its_own_metrics_broker_folder_and_tells_its_children(
    tmp_path: Path,
) -> None:
    """The controller's folders are in the environment a worker inherits: a worker makes its
    own (the metrics tests count exact deltas), and what it starts inherits the worker's."""
    controller_metrics = tmp_path / "jobtrail-test-metrics-controller"
    controller_broker = tmp_path / f"jobtrail-test-broker-{os.getpid()}-controller"
    controller_metrics.mkdir()
    controller_broker.mkdir()
    inherited = {
        "PROMETHEUS_MULTIPROC_DIR": str(controller_metrics),
        "JOBTRAIL_TEST_BROKER_DIR": str(controller_broker),
        "PYTEST_XDIST_WORKER": "gw1",
    }

    def folders(*, under_pytest: bool, **extra: str) -> list[str]:
        done = _settings_in_a_process(
            tmp_path, FOLDERS, under_pytest=under_pytest, **{**inherited, **extra}
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    metrics, broker, url = folders(under_pytest=True, CELERY_BROKER_URL="filesystem://")
    assert metrics not in ("", str(controller_metrics))
    assert broker != str(controller_broker)
    assert Path(broker).name.startswith("jobtrail-test-broker-")
    assert url == "filesystem://"
    # a process the worker starts (no pytest in it) uses what it was handed
    metrics, broker, url = folders(under_pytest=False, CELERY_BROKER_URL="filesystem://")
    assert (metrics, broker) == (str(controller_metrics), str(controller_broker))
    # on Redis the worker hands its own database on through the environment
    *_, url = folders(under_pytest=True, CELERY_BROKER_URL="redis://127.0.0.1:6379/2")
    assert url == "redis://127.0.0.1:6379/4"


def test_more_xdist_workers_than_redis_databases_is_a_clear_error(tmp_path: Path) -> None:
    done = _settings_in_a_process(
        tmp_path,
        BROKER,
        under_pytest=True,
        CELERY_BROKER_URL="redis://127.0.0.1:6379/4",
        PYTEST_XDIST_WORKER="gw11",
    )
    assert done.returncode != 0
    assert "would use Redis database 16" in done.stderr
