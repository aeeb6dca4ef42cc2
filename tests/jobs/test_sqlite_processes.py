"""The embedded SQLite default takes writes from several processes at once (web, worker, beat)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import django, sys
django.setup()
from jobs import services
from jobs.models import Company
company, _ = Company.objects.get_or_create(name="Writers")
for n in range(int(sys.argv[1])):
    job = services.job_create(company=company, type="export")
    services.job_start(job_id=job.pk)
    services.job_record_progress(job_id=job.pk, total_records=2, effected_records=1)
    services.job_complete(job_id=job.pk, effected_records=2)
print("done")
"""
COUNT = """
import django
django.setup()
from jobs.models import Job, JobEvent
print(Job.objects.filter(status="completed").count(), JobEvent.objects.count())
"""


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=f"sqlite:///{db}",
    )
    return env


def test_three_processes_write_without_database_is_locked(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite3"
    env = _env(db)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, "25"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [w.communicate(timeout=180) for w in writers]
    for w, (out, err) in zip(writers, results, strict=True):
        assert w.returncode == 0, err
        assert "database is locked" not in err
        assert out.strip() == "done"
    counted = subprocess.run(
        [sys.executable, "-c", COUNT],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert counted.stdout.split() == ["75", str(75 * 4)]
    with sqlite3.connect(db) as conn:  # WAL mode is a property of the file once set
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
