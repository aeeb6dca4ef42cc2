"""Benchmarks, each a ratio against a baseline measured in the same run (the machine is shared).

    .venv/bin/python bench/run.py                 # embedded SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jobtrail .venv/bin/python bench/run.py

Writes bench/results/<database>.json. Timings live here, never in a test's assertion.
"""

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ.setdefault("JOBTRAIL_API_RATE_LIMIT", "1000000/minute")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(prepare: Callable[[], object], run: Callable[[object], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        state = prepare()
        samples.append(timed(lambda state=state: run(state)))  # type: ignore[misc]
    return statistics.median(samples)


def bench_expiry(n: int = 1000) -> dict[str, object]:
    from jobs import services
    from jobs.models import Company, Job

    company, _ = Company.objects.get_or_create(name="Bench expiry")

    def prepare() -> list[object]:
        Job.objects.filter(company=company).delete()
        ids = [services.job_create(company=company, type="export").pk for _ in range(n)]
        Job.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(seconds=1))
        return ids

    loop = median_of(prepare, lambda ids: [services.job_expire(job_id=i) for i in ids])
    batched = median_of(prepare, lambda ids: services.jobs_expire_stale())
    return {
        "name": "expire stale jobs",
        "what": f"{n} stale jobs: set-based batches vs a loop of single-job expiries",
        "baseline_s": round(loop, 4),
        "measured_s": round(batched, 4),
        "ratio": round(loop / batched, 2),
        "reads": "times faster than the loop",
    }


def bench_report(n: int = 20_000) -> dict[str, object]:
    import csv
    import io

    from jobs import services
    from jobs.models import Company, JobStatus, PushResult
    from reports.services import HEADER, _csv_row, report_build

    company, _ = Company.objects.get_or_create(name="Bench report")
    job = services.job_create(company=company, type="export")
    now = datetime.now(UTC)
    PushResult.objects.bulk_create(
        (
            PushResult(
                job=job,
                push_communication_id=f"{i:024x}",
                status="success",
                response_code=200,
                data_type="invoices",
                service_name="xero",
                source_object_ids=[str(i)],
                requested_on=now,
                completed_on=now,
                validation_errors=[],
            )
            for i in range(n)
        ),
        batch_size=5000,
    )
    services.job_start(job_id=job.pk)
    services.job_complete(job_id=job.pk)
    assert job.pk and JobStatus.COMPLETED
    rows = list(PushResult.objects.filter(job=job).values_list(*HEADER))

    def in_memory(_: object) -> None:
        out = io.StringIO()
        writer = csv.writer(out)
        for row in rows:
            writer.writerow(_csv_row(row))

    baseline = median_of(lambda: None, in_memory)
    build = median_of(lambda: None, lambda _: report_build(job_id=job.pk))
    return {
        "name": "build a CSV report",
        "what": f"{n} push results streamed from the database into storage vs formatting the "
        "same rows already in memory",
        "baseline_s": round(baseline, 4),
        "measured_s": round(build, 4),
        "ratio": round(build / baseline, 2),
        "reads": "times the in-memory formatting cost",
    }


def bench_api(n: int = 200) -> dict[str, object]:
    from rest_framework.test import APIClient

    from jobs import services
    from jobs.accounts import api_client_create
    from jobs.auth import CompanyTokenObtainPairSerializer
    from jobs.models import Company

    creds = api_client_create(company_name="Bench API", username="bench", password="bench-pass-1")
    company = Company.objects.get(name="Bench API")
    token = CompanyTokenObtainPairSerializer.get_token(creds.user).access_token  # type: ignore[attr-defined]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def direct(_: object) -> None:
        for _i in range(n):
            job = services.job_create(company=company, type="export")
            services.job_start(job_id=job.pk)
            services.job_complete(job_id=job.pk)

    def through_api(_: object) -> None:
        for _i in range(n):
            job = client.post("/api/v1/jobs/", {"type": "export"}, format="json").json()
            client.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "started"}, format="json")
            client.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "completed"}, format="json")

    baseline = median_of(lambda: None, direct)
    api = median_of(lambda: None, through_api)
    return {
        "name": "job lifecycle through the API",
        "what": f"{n} jobs created, started and completed over HTTP (JWT, validation, "
        "serialization) vs the same service calls directly",
        "baseline_s": round(baseline, 4),
        "measured_s": round(api, 4),
        "ratio": round(api / baseline, 2),
        "reads": "times the bare service cost",
    }


def bench_admin_list(n: int = 200_000) -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from django.core.paginator import Paginator
    from django.test import Client

    from jobs.admin import JobAdmin
    from jobs.models import Company, Job

    company, _ = Company.objects.get_or_create(name="Bench admin")
    now = timezone.now()
    batch = 20_000
    for start in range(0, n, batch):
        Job.objects.bulk_create(
            Job(
                company=company,
                code=f"ADM-{i:07d}",
                type="export",
                status="completed" if i % 3 else "processing",
                last_activity_at=now,
                expires_after=60,
            )
            for i in range(start, min(n, start + batch))
        )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE jobs_job")
    user = get_user_model().objects.create_superuser("bench-admin", "", "bench-pass-1")
    client = Client()
    client.force_login(user)
    url = "/admin/jobs/job/?status__exact=completed"
    estimated = JobAdmin.paginator

    def page(_: object) -> None:
        assert client.get(url).status_code == 200

    fast = median_of(lambda: None, page)
    JobAdmin.paginator = Paginator
    try:
        exact = median_of(lambda: None, page)
    finally:
        JobAdmin.paginator = estimated
    return {
        "name": "admin job list, filtered",
        "what": f"{n} jobs, status filter: planner-estimated page count vs COUNT(*) "
        + ("" if connection.vendor == "postgresql" else "(SQLite: both count exactly)"),
        "baseline_s": round(exact, 4),
        "measured_s": round(fast, 4),
        "ratio": round(exact / fast, 2),
        "reads": "times faster than counting exactly",
    }


def main() -> None:
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        results = [bench_expiry(), bench_report(), bench_api(), bench_admin_list()]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    database = connection.vendor
    report = {
        "database": database,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "repeats": REPEATS,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    out = ROOT / "bench" / "results" / f"{database}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(f"{r['name']:<32} ratio {r['ratio']:>6}  ({r['reads']}; {r['what']})")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
