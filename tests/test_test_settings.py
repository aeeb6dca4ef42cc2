"""The test settings clean up after themselves."""

import os
import subprocess
import sys
from pathlib import Path

from tests.live import ROOT


def test_the_throwaway_broker_folder_is_removed_at_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(TMPDIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings_test")
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
