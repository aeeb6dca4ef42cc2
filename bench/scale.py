"""One-off measurements at scale (PostgreSQL): what a million jobs do to Jobtrail.

    .venv/bin/python bench/scale.py --relay --label after  # everything, 1M jobs
    .venv/bin/python bench/scale.py --jobs 100000 --expire 10000 --push-results 100000
    .venv/bin/python bench/scale.py --only admin,read      # some parts: expiry, admin, read, report
    .venv/bin/python bench/scale.py --only search --out bench/results/console-search.json

Builds the data set-based (INSERT ... SELECT FROM generate_series), in databases it creates and
drops (<BENCH_DB_PREFIX>_scale, _scale_small on BENCH_PG), then measures, each against its
baseline in the same run:

expiry  ``jobs_expire_stale()`` of --expire stale jobs among --jobs (2 endpoints subscribed per
        company) vs one raw SQL UPDATE of the same rows (the ratio), and vs that UPDATE
        writing a bare event per job in the same statement (``ratio_with_events``); each run
        on the same rows made stale again, vacuumed, after a checkpoint. With --relay, the
        relay's fan-out of the events afterwards is timed too (the worker's part: not in
        the ratio);
admin   every admin job-list view (each filter choice, search by code, every sortable column both
        ways) and the change page of a job with --events events, at --jobs vs --small jobs
        (Django's test client as a logged-in superuser, best of 5 after a warm-up, the two
        sizes alternating for --admin-rounds rounds, each view's best kept; ``sql_ms`` is the
        time of its SQL statements);
read    GET /api/v1/jobs/{id}/ of a job while another job holds --push-results push results
        (median and worst of 20), vs the same read before those rows existed, with the time
        of its SQL statements and whether any touches push results;
search  the staff console's searches (``--only search --out bench/results/console-search.json``):
        jobs by code prefix, code in any case, company name, metadata key=value, push
        communication id and request id; deliveries by job code, created or last attempted in
        an hour, by company; at --jobs vs --small jobs, each job with one delivery and attempt
        and one in five with a push result (built with the jobs for this part only), measured
        like admin;
report  the CSV report of those push results (``report_build`` in a subprocess: rows/s, peak
        RSS from ``resource.getrusage``) vs PostgreSQL's ``COPY ... CSV`` of the same rows.

Writes bench/results/scale-<label>.json (--label, default "latest"), with how long each part took.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
PREFIX = os.environ.get("BENCH_DB_PREFIX", "jobtrail_bench") + "_scale"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
COMPANIES = 10


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def env_for(database: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=f"{PG}/{database}",
        CELERY_BROKER_URL=REDIS,
        JOBTRAIL_API_RATE_LIMIT="1000000000/minute",
        PYTHONUNBUFFERED="1",
    )
    return env


def pg_admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def phase(name: str, database: str, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """Run one part in a fresh process on ``database``; it prints its result as a JSON line."""
    argv = [sys.executable, __file__, "--phase", name, "--db", database, *extra]
    for option in ("jobs", "small", "expire", "events", "push_results"):
        argv += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    if args.relay:
        argv.append("--relay")
    if args.search_data:
        argv.append("--search-data")
    started = time.perf_counter()
    run = subprocess.run(argv, cwd=ROOT, env=env_for(database), capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"phase {name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}")
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["took_s"] = round(time.perf_counter() - started, 1)
    return result


# --- inside a phase: Django is set up on one database -------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class SQLTimer:
    """Counts and times the SQL statements Django runs inside ``with`` (``execute_wrapper``)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.seconds = 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.statements.append(sql)

    def __enter__(self) -> SQLTimer:
        from django.db import connection

        self._wrapper = connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._wrapper.__exit__(*exc)


def insert_series(
    model: Any, count: int, exprs: dict[str, str], *, source: str | None = None
) -> None:
    """INSERT ``count`` rows of ``model`` in one statement over generate_series (``g``).

    ``source`` replaces the generate_series (``FROM <source>``): rows made from other rows.

    Columns not in ``exprs`` get their field's default (so fields added later need no change
    here): uuid4 -> gen_random_uuid(), auto_now(_add) -> now(), other defaults as literals.
    """
    from django.db import connection
    from django.db.models import NOT_PROVIDED, AutoField, BigAutoField, JSONField
    from psycopg import sql

    columns, values = [], []
    for f in model._meta.concrete_fields:
        if isinstance(f, AutoField | BigAutoField):
            continue
        if f.name in exprs or f.attname in exprs:
            expr = exprs.get(f.name) or exprs[f.attname]
        elif getattr(f, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            continue
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            expr = "now()"
        elif f.has_default():
            default = f.default
            if default is uuid.uuid4:
                expr = "gen_random_uuid()"
            else:
                value = default() if callable(default) else default
                if isinstance(f, JSONField):
                    expr = sql.Literal(json.dumps(value)).as_string() + "::jsonb"
                else:
                    expr = sql.Literal(value).as_string()
        elif f.null:
            expr = "NULL"
        else:
            raise ValueError(f"{model.__name__}.{f.name}: no value for a bulk insert")
        columns.append(f'"{f.column}"')
        values.append(expr)
    source = source or f"generate_series(1, {int(count)}) AS g"
    statement = (
        f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) '
        f"SELECT {', '.join(values)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement)


def populate(args: argparse.Namespace, jobs: int, expire: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from jobs.accounts import api_client_create
    from jobs.models import Company, Job, JobEvent
    from webhooks.services import endpoint_create

    companies = [Company.objects.create(name=f"Scale {i}") for i in range(COMPANIES)]
    for company in companies:
        for i in range(2):
            endpoint_create(company=company, url=f"http://127.0.0.1:9/hook/{i}", events=["*"])
    api_client_create(company_name="Scale 0", username="scale", password="scale-pass-123456")
    get_user_model().objects.create_superuser("scale-admin", "", "scale-pass-123456")
    ids = "ARRAY[" + ",".join(f"'{c.pk}'" for c in companies) + "]::uuid[]"
    status = (
        f"CASE WHEN g <= {expire} THEN 'processing' ELSE (ARRAY['completed','completed',"
        "'completed','failed','completed_with_errors','processing','pending'])[1 + g % 7] END"
    )
    created = "now() - g * interval '1 second' - interval '1 hour'"
    terminal = f"({status}) IN ('completed','completed_with_errors','failed')"
    extra = {}
    if args.search_data:
        # the console's metadata search: a customer shared by 1 job in 1,000, a unique ref
        extra["metadata"] = (
            "jsonb_build_object('customer', 'C' || lpad((g % 1000)::text, 4, '0'), "
            "'order', jsonb_build_object('ref', 'SO-' || g))"
        )
    started = time.perf_counter()
    insert_series(
        Job,
        jobs,
        {
            **extra,
            "company": f"({ids})[1 + g % {COMPANIES}]",
            "code": "'JOB-' || lpad(g::text, 8, '0')",
            "type": "(ARRAY['export','import','sync'])[1 + g % 3]",
            "status": status,
            "failure_reason": f"CASE WHEN ({status}) = 'failed' THEN "
            "(ARRAY['accounting_system_unreachable','validation_failure','job_expired'])"
            "[1 + g % 3] ELSE '' END",
            "message": "'scale'",
            "total_records": "100",
            "effected_records": f"CASE WHEN {terminal} THEN 100 ELSE 50 END",
            "start_time": f"CASE WHEN ({status}) = 'pending' THEN NULL ELSE {created} END",
            "end_time": f"CASE WHEN {terminal} THEN {created} + interval '10 minutes' END",
            "last_activity_at": f"{created} + interval '5 minutes'",
            "expires_after": "86400",
            "expires_at": f"CASE WHEN g <= {expire} THEN now() - interval '1 minute' "
            f"WHEN {terminal} THEN NULL ELSE now() + interval '1 day' END",
            "created_at": created,
            "updated_at": f"{created} + interval '5 minutes'",
        },
    )
    jobs_s = time.perf_counter() - started
    # the job page with many events: a finished job (never a stale one)
    event_job = Job.objects.filter(status="completed").order_by("code").first()
    assert event_job is not None
    JobEvent.objects.filter(job=event_job).delete()
    insert_series(
        JobEvent,
        args.events,
        {
            "job": f"'{event_job.pk}'::uuid",
            "sequence": "g",
            "status": "CASE WHEN g = 1 THEN 'created' ELSE 'progress' END",
            "message": "'event ' || g",
            "source": "'api'",
            "created_at": "now() - interval '1 hour' + g * interval '1 second'",
        },
    )
    result = {"jobs": jobs, "stale": expire, "insert_jobs_s": round(jobs_s, 1)}
    if args.search_data:
        result |= populate_search(jobs)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE jobs_job SET last_sequence = %s WHERE id = %s", [args.events, event_job.pk]
        )
        cursor.execute("VACUUM ANALYZE")
    return result


def populate_search(jobs: int) -> dict[str, Any]:
    """What the console's searches read beside the jobs: push results (one job in five, with
    a push communication id and a request id shared by ten), and one delivery per job to its
    company's first endpoint, with one attempt each."""
    from jobs.models import PushResult
    from webhooks.models import WebhookAttempt, WebhookDelivery

    started = time.perf_counter()
    insert_series(
        PushResult,
        jobs // 5,
        {
            "job": "(SELECT id FROM jobs_job WHERE code = 'JOB-' || lpad((g * 5)::text, 8, '0'))",
            "push_communication_id": "'pc-' || (g * 5)",
            "request_id": "'req-' || (g / 2)",
            "status": "'success'",
            "response_code": "200",
        },
    )
    endpoint = (
        "(SELECT e.id FROM webhooks_webhookendpoint e WHERE e.company_id = j.company_id "
        "ORDER BY e.url LIMIT 1)"
    )
    insert_series(
        WebhookDelivery,
        jobs,
        {
            "endpoint": endpoint,
            "company": "j.company_id",
            "job_event": "NULL",
            "event_id": "'msg_' || j.id",
            "events_id": "'jobs.create'",
            "object_id": "j.id::text",
            "payload": "'{}'::jsonb",
            "status": "CASE WHEN j.status = 'failed' THEN 'failed' ELSE 'delivered' END",
            "attempts": "1",
            "last_status_code": "CASE WHEN j.status = 'failed' THEN 500 ELSE 200 END",
            "delivered_at": "CASE WHEN j.status = 'failed' THEN NULL "
            "ELSE j.created_at + interval '1 second' END",
            "last_attempt_at": "j.created_at + interval '1 second'",
            "created_at": "j.created_at",
            "updated_at": "j.created_at + interval '1 second'",
        },
        source="jobs_job j",
    )
    insert_series(
        WebhookAttempt,
        jobs,
        {
            "delivery": "d.id",
            "number": "1",
            "started_at": "d.created_at + interval '1 second'",
            "duration_ms": "40",
            "status_code": "d.last_status_code",
            "url": "'http://127.0.0.1:9/hook/0'",
        },
        source="webhooks_webhookdelivery d",
    )
    return {"insert_search_data_s": round(time.perf_counter() - started, 1)}


def measure_expiry(args: argparse.Namespace) -> dict[str, Any]:
    import redis
    from django.db import connection, transaction

    from jobs.models import JobEvent
    from jobs.relay import events_relay
    from jobs.services import jobs_expire_stale
    from webhooks import lanes
    from webhooks.models import WebhookDelivery

    stale = "status IN ('pending', 'processing') AND expires_at <= now()"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM jobs_job WHERE {stale}")
        ids = [row[0] for row in cursor.fetchall()]
    failed = (
        "status = 'failed', failure_reason = 'job_expired', "
        "message = 'No activity within the expiry time limit.', "
        "start_time = COALESCE(start_time, now()), end_time = now(), expires_at = NULL, "
        "last_activity_at = now(), updated_at = now()"
    )

    def prepare() -> None:
        """The same rows stale again, nothing left behind, no checkpoint pending."""
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE jobs_job SET status = 'processing', failure_reason = '', end_time = NULL, "
                "expires_at = now() - interval '1 minute' WHERE id = ANY(%s) "
                "AND status = 'failed'",
                [ids],
            )
            cursor.execute("DELETE FROM jobs_jobevent WHERE job_id = ANY(%s)", [ids])
            cursor.execute("VACUUM ANALYZE jobs_job")
            cursor.execute("VACUUM ANALYZE jobs_jobevent")
            cursor.execute("CHECKPOINT")

    def raw_update() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"UPDATE jobs_job SET {failed} WHERE {stale}")

    def raw_update_with_events() -> None:
        # the same UPDATE and, in the same statement, one bare event per job (numbered after
        # the job's last one, kept on the row, no snapshot): the least a change logged in the
        # outbox writes
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"WITH failed AS (UPDATE jobs_job SET {failed}, "
                f"last_sequence = last_sequence + 1 WHERE {stale} RETURNING id, last_sequence) "
                "INSERT INTO jobs_jobevent (job_id, kind, sequence, status, failure_reason, "
                "message, data, source, created_at) "
                "SELECT f.id, 'timeline', f.last_sequence, 'failed', "
                "'job_expired', 'No activity within the expiry time limit.', '{}', 'system', "
                "now() FROM failed f"
            )

    prepare()
    baseline = timed(raw_update)
    prepare()
    baseline_events = timed(raw_update_with_events)
    prepare()
    events_before = JobEvent.objects.count()
    expired = 0

    def expire() -> None:
        nonlocal expired
        expired = jobs_expire_stale()

    measured = timed(expire)
    events_written = JobEvent.objects.count() - events_before
    result = {
        "stale_jobs": len(ids),
        "expired": expired,
        "events_written": events_written,
        "raw_update_s": round(baseline, 3),
        "raw_update_with_events_s": round(baseline_events, 3),
        "expire_s": round(measured, 3),
        "ratio": round(measured / baseline, 2) if baseline else None,
        "ratio_with_events": round(measured / baseline_events, 2) if baseline_events else None,
    }
    if args.relay:
        # not part of the ratio: the worker's relay fanning the events out afterwards
        relayed = 0

        def relay() -> None:
            nonlocal relayed
            relayed = sum(events_relay(budget=None, lane=lane) for lane in lanes.LANES)

        result["relay_s"] = round(timed(relay), 1)
        result["relayed_events"] = relayed
        result["deliveries"] = WebhookDelivery.objects.count()
    redis.Redis.from_url(REDIS).flushdb()
    return result


def admin_urls() -> dict[str, str]:
    """Every job-list view a staff member can ask for: filters, search, each sort both ways."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from jobs.models import Job

    model_admin = admin.site._registry[Job]
    request = RequestFactory().get("/admin/jobs/job/")
    request.user = get_user_model().objects.get(username="scale-admin")
    changelist = model_admin.get_changelist_instance(request)
    urls = {"list": "/admin/jobs/job/"}
    for spec in changelist.filter_specs:
        title = str(getattr(spec, "title", type(spec).__name__))
        choices = [
            c for c in spec.choices(changelist) if not c.get("selected") and "query_string" in c
        ]
        for choice in choices[:3]:
            urls[f"filter {title}: {choice['display']}"] = (
                "/admin/jobs/job/" + choice["query_string"]
            )
    # the free-text, autocomplete and range filters have no links: give them typical values
    company = Job.objects.values_list("company_id", flat=True).first()
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    samples = {"type": "export", "company__id__exact": str(company), "created_from": week_ago}
    for spec in changelist.filter_specs:
        for parameter in getattr(spec, "parameters", None) or [getattr(spec, "parameter_name", "")]:
            if parameter in samples:
                urls[f"filter {parameter}"] = f"/admin/jobs/job/?{parameter}={samples[parameter]}"
    code = Job.objects.order_by("code").values_list("code", flat=True)[Job.objects.count() // 2]
    urls["search by code"] = f"/admin/jobs/job/?q={code}"
    # console v2 searches: any case, a code prefix (1 in 100 and every job), a company name
    urls["search by code, lower case"] = f"/admin/jobs/job/?q={code.lower()}"
    urls["search by code prefix (1%)"] = f"/admin/jobs/job/?q={code[:-2].lower()}"
    urls["search by code prefix (all)"] = "/admin/jobs/job/?q=job-"
    urls["search by company name"] = "/admin/jobs/job/?q=scale%203"
    for index, name in enumerate(changelist.list_display):
        if changelist.get_ordering_field(name) is None:
            continue
        urls[f"sort {name}"] = f"/admin/jobs/job/?o={index}"
        urls[f"sort -{name}"] = f"/admin/jobs/job/?o=-{index}"
    return urls


def measure_admin(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    from jobs.models import Job, JobEvent

    setup_test_environment()
    client = Client()
    client.force_login(get_user_model().objects.get(username="scale-admin"))
    event_job = JobEvent.objects.values_list("job_id", flat=True).order_by("-sequence").first()
    urls = {**admin_urls(), "job page (1,000 events)": f"/admin/jobs/job/{event_job}/change/"}
    timings = {}
    for label, url in urls.items():

        def get(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        get()  # warm-up
        # the best of 5: the work is deterministic, the machine's noise only ever adds time;
        # the SQL statements timed apart (what grows with the table, the rest does not)
        samples = []
        for _ in range(5):
            with SQLTimer() as sql:
                samples.append((timed(get), sql.seconds, len(sql.statements)))
        timings[label] = {
            "url": url,
            "ms": round(min(total for total, _, _ in samples) * 1000, 1),
            "sql_ms": round(min(sql_s for _, sql_s, _ in samples) * 1000, 2),
            "queries": samples[0][2],
        }
    return {"jobs": Job.objects.count(), "views": timings}


def search_urls() -> dict[str, str]:
    """The console's searches (issue 13): jobs by code, company, metadata, external id;
    deliveries by job code, time window and company. Values from the middle of the data."""
    from jobs.models import Job
    from webhooks.models import WebhookDelivery

    count = Job.objects.count()
    middle = count // 2
    code = f"JOB-{middle:08d}"
    job = Job.objects.get(code=code)
    company = job.company_id
    jobs, deliveries = "/admin/jobs/job/", "/admin/webhooks/webhookdelivery/"
    # an hour of deliveries ending with the middle job's (at 1k jobs: all of them)
    end = job.created_at
    window = (
        f"{(end - timedelta(hours=1)).isoformat(timespec='seconds')}",
        f"{end.isoformat(timespec='seconds')}",
    )
    assert WebhookDelivery.objects.filter(object_id=str(job.pk)).exists()
    external = middle - middle % 5 or 5  # one job in five has push results
    qs = urllib.parse.urlencode
    return {
        "jobs: code prefix (1%)": f"{jobs}?{qs({'q': code[:-2].lower()})}",
        "jobs: code, lower case": f"{jobs}?{qs({'q': code.lower()})}",
        "jobs: company name": f"{jobs}?{qs({'q': 'scale 3'})}",
        "jobs: metadata key=value (1 job in 1,000)": f"{jobs}?"
        + qs({"q": f"meta:customer=C{middle % 1000:04d}"}),
        "jobs: metadata nested key=value (one job)": f"{jobs}?"
        + qs({"q": f"meta:order.ref=SO-{middle}"}),
        "jobs: push communication id": f"{jobs}?{qs({'q': f'pc-{external}'})}",
        "jobs: request id": f"{jobs}?{qs({'q': f'req-{external // 5 // 2}'})}",
        "deliveries: list": deliveries,
        "deliveries: by job code": f"{deliveries}?{qs({'q': code.lower()})}",
        "deliveries: created in an hour": f"{deliveries}?"
        + qs({"created_from": window[0], "created_to": window[1]}),
        "deliveries: last attempt in an hour": f"{deliveries}?"
        + qs({"last_attempt_from": window[0], "last_attempt_to": window[1]}),
        "deliveries: company": f"{deliveries}?{qs({'company__id__exact': company})}",
        "deliveries: company, created in an hour": f"{deliveries}?"
        + qs({"company__id__exact": company, "created_from": window[0], "created_to": window[1]}),
    }


def measure_search(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    from jobs.models import Job

    setup_test_environment()
    client = Client()
    client.force_login(get_user_model().objects.get(username="scale-admin"))
    timings = {}
    for label, url in search_urls().items():

        def get(url: str = url) -> int:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            return len(re.findall(rb'name="_selected_action"', response.content))

        rows = get()  # warm-up; how many rows the page lists
        samples = []
        for _ in range(5):
            with SQLTimer() as sql:
                samples.append((timed(get), sql.seconds, len(sql.statements)))
        timings[label] = {
            "url": url,
            "rows_listed": rows,
            "ms": round(min(total for total, _, _ in samples) * 1000, 1),
            "sql_ms": round(min(sql_s for _, sql_s, _ in samples) * 1000, 2),
            "queries": samples[0][2],
        }
    return {"jobs": Job.objects.count(), "views": timings}


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per view, the fastest of several admin runs (interleaved with the other size's)."""
    views = {
        label: min((run["views"][label] for run in runs), key=lambda view: view["ms"])
        for label in runs[0]["views"]
    }
    return {"jobs": runs[0]["jobs"], "views": views, "took_s": sum(r["took_s"] for r in runs)}


def api_get(client: Any, token: str, job_id: Any) -> float:
    def get() -> None:
        response = client.get(f"/api/v1/jobs/{job_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200, response.content[:300]

    return timed(get)


def measure_read(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from jobs.auth import CompanyTokenObtainPairSerializer
    from jobs.models import Company, Job, PushResult

    setup_test_environment()
    company = Company.objects.get(name="Scale 0")
    user = get_user_model().objects.get(username="scale")
    token = str(CompanyTokenObtainPairSerializer.get_token(user).access_token)  # type: ignore[attr-defined]
    jobs = list(Job.objects.filter(company=company, status="completed").order_by("code")[:2])
    heavy, other = jobs
    client = Client()

    sql_ms: list[float] = []

    def reads() -> list[float]:
        api_get(client, token, other.pk)
        times = []
        sql_ms.clear()
        for _ in range(20):
            with SQLTimer() as sql:
                times.append(api_get(client, token, other.pk) * 1000)
            sql_ms.append(sql.seconds * 1000)
        return times

    before = reads()
    sql_before = list(sql_ms)
    started = time.perf_counter()
    insert_series(
        PushResult,
        args.push_results,
        {
            "job": f"'{heavy.pk}'::uuid",
            "push_communication_id": "lpad(to_hex(g), 24, '0')",
            "status": "CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'success' END",
            "response_code": "CASE WHEN g % 10 = 0 THEN 400 ELSE 200 END",
            "data_type": "'invoices'",
            "service_name": "'xero'",
            "source_object_ids": "jsonb_build_array(g::text)",
            "requested_on": "now() - interval '1 hour'",
            "completed_on": "now() - interval '59 minutes'",
            "validation_errors": "CASE WHEN g % 10 = 0 THEN "
            '\'[{"field": "amount", "message": "must be positive"}]\'::jsonb '
            "ELSE '[]'::jsonb END",
        },
    )
    insert_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        # as autovacuum would have by the time: hint bits set, so the report's first read of
        # the rows is not also the one that writes them (scale-before.json only ANALYZEd)
        cursor.execute("VACUUM ANALYZE jobs_pushresult")
    after = reads()
    heavy_read = [api_get(client, token, heavy.pk) * 1000 for _ in range(5)]
    # the database's part of one read: its statements, and whether any touches push results
    with SQLTimer() as sql:
        api_get(client, token, other.pk)
    return {
        "push_results": args.push_results,
        "insert_push_results_s": round(insert_s, 1),
        "heavy_job": str(heavy.pk),
        "read_ms_before": round(statistics.median(before), 2),
        "read_ms": round(statistics.median(after), 2),
        "read_ms_worst": round(max(after), 2),
        "read_heavy_job_ms": round(statistics.median(heavy_read), 2),
        "read_queries": len(sql.statements),
        "read_sql_ms_before": round(statistics.median(sql_before), 2),
        "read_sql_ms": round(statistics.median(sql_ms), 2),
        "read_touches_push_results": any("jobs_pushresult" in q for q in sql.statements),
    }


def measure_report(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    from django.db import connection

    from jobs.models import Job, PushResult
    from reports.services import HEADER, report_request

    heavy = Job.objects.get(pk=args.job)
    rows = PushResult.objects.filter(job=heavy).count()
    report_request(job=heavy)
    # the build, in a process of its own: its peak RSS is the build's alone
    code = (
        "import django, json, resource, sys, time; django.setup()\n"
        "from reports.services import report_build\n"
        "t = time.perf_counter(); r = report_build(job_id=sys.argv[1])\n"
        "s = time.perf_counter() - t\n"
        "print('BUILD', json.dumps({'s': s, 'rows': r.row_count if r else None,"
        " 'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(heavy.pk)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    if run.returncode:
        raise RuntimeError(run.stderr[-3000:])
    build = json.loads([ln for ln in run.stdout.splitlines() if ln.startswith("BUILD ")][-1][6:])
    children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    columns = ", ".join(f'"{PushResult._meta.get_field(h).column}"' for h in HEADER)
    started = time.perf_counter()
    copied = 0
    connection.ensure_connection()
    with (
        connection.connection.cursor() as cursor,
        cursor.copy(
            f"COPY (SELECT {columns} FROM jobs_pushresult WHERE job_id = '{heavy.pk}' "
            "ORDER BY received_at, id) "
            "TO STDOUT WITH CSV HEADER"
        ) as copy,
    ):
        for chunk in copy:
            copied += bytes(chunk).count(b"\n")
    copy_s = time.perf_counter() - started
    return {
        "rows": rows,
        "report_rows": build["rows"],
        "build_s": round(build["s"], 2),
        "rows_per_s": round(rows / build["s"]) if build["s"] else None,
        "peak_rss_mb": round(max(build["rss_kb"], children_rss) / 1024, 1),
        "copy_rows_per_s": round((copied - 1) / copy_s) if copy_s else None,
        "copy_s": round(copy_s, 2),
    }


def run_phase(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if args.phase == "populate":
        result = populate(args, args.jobs, args.expire)
    elif args.phase == "populate-small":
        result = populate(args, args.small, 0)
    elif args.phase == "expiry":
        result = measure_expiry(args)
    elif args.phase == "admin":
        result = measure_admin(args)
    elif args.phase == "search":
        result = measure_search(args)
    elif args.phase == "read":
        result = measure_read(args)
    elif args.phase == "report":
        result = measure_report(args)
    else:
        raise SystemExit(f"unknown phase {args.phase}")
    print("RESULT " + json.dumps(result), flush=True)


def compare_sizes(part: str, big: str, small: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the views of ``part`` (admin, search) on both sizes: best of each, the ratio.

    The two sizes alternate, each view's best taken: a busy spell of the machine then slows
    one round of both sizes, not one size.
    """
    runs_small, runs_big = [], []
    for _ in range(args.admin_rounds):
        runs_small.append(phase(part, small, args))
        runs_big.append(phase(part, big, args))
    at_small, at_big = best_of(runs_small), best_of(runs_big)
    views = {
        label: {
            "url": view["url"],
            "ms_small": at_small["views"].get(label, {}).get("ms"),
            "ms": view["ms"],
            "ratio": round(view["ms"] / at_small["views"][label]["ms"], 2)
            if label in at_small["views"]
            else None,
            "sql_ms_small": at_small["views"].get(label, {}).get("sql_ms"),
            "sql_ms": view["sql_ms"],
            "queries": view["queries"],
            **({"rows_listed": view["rows_listed"]} if "rows_listed" in view else {}),
        }
        for label, view in at_big["views"].items()
    }
    return {
        "jobs": at_big["jobs"],
        "jobs_small": at_small["jobs"],
        "rounds": args.admin_rounds,
        "took_s": at_small["took_s"] + at_big["took_s"],
        "worst_ratio": max((v["ratio"] or 0) for v in views.values()),
        "worst_sql_ms": max(v["sql_ms"] for v in views.values()),
        "views": views,
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--expire", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--push-results", type=int, default=1_000_000)
    parser.add_argument("--only", default="expiry,admin,read,report")
    parser.add_argument("--label", default="latest")
    parser.add_argument(
        "--admin-rounds", type=int, default=3, help="admin runs per size, alternating"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--relay",
        action="store_true",
        help="after the expiry, time the relay fanning its events out (not in the ratio)",
    )
    parser.add_argument("--out", help="the results file (default bench/results/scale-<label>.json)")
    parser.add_argument("--search-data", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    # the console's searches read push results, deliveries and attempts built with the jobs
    args.search_data = args.search_data or "search" in parts
    big, small, template = PREFIX, f"{PREFIX}_small", f"{PREFIX}_tmpl"
    started = time.perf_counter()
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"scale-{args.label}.json"
    # a run of some parts updates them in an existing file of the same label
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    report |= {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "sizes": {
            "jobs": args.jobs,
            "small": args.small,
            "expire": args.expire,
            "events": args.events,
            "push_results": args.push_results,
        },
    }
    try:
        log(f"migrating the template {template}")
        pg_admin(
            *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in (big, small, template)),
            f'CREATE DATABASE "{template}"',
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env_for(template),
            check=True,
        )
        pg_admin(f'CREATE DATABASE "{big}" TEMPLATE "{template}"')
        log(f"building {args.jobs:,} jobs ({args.expire:,} stale) in {big}")
        report["populate"] = phase("populate", big, args)
        log(f"built in {report['populate']['took_s']} s")
        if "expiry" in parts:
            report["expiry"] = phase("expiry", big, args)
            log(f"expiry: {report['expiry']}")
        if "admin" in parts or "search" in parts:
            pg_admin(f'CREATE DATABASE "{small}" TEMPLATE "{template}"')
            phase("populate-small", small, args)
        for part in ("admin", "search"):
            if part in parts:
                report[part] = compare_sizes(part, big, small, args)
                log(f"{part}: worst ratio {report[part]['worst_ratio']}")
        if "read" in parts or "report" in parts:
            report["read"] = phase("read", big, args)
            log(f"read: {report['read']}")
        if "report" in parts:
            report["report"] = phase("report", big, args, "--job", report["read"]["heavy_job"])
            log(f"report: {report['report']}")
    finally:
        report["took_s"] = round(time.perf_counter() - started, 1)
        # a partial run updates its parts: which run measured what
        report.setdefault("runs", []).append(
            {
                "when": report["when"],
                "commit": report["commit"],
                "parts": parts,
                "took_s": report["took_s"],
            }
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"written to {out} ({report['took_s']} s)")
        if not args.keep:
            pg_admin(
                *(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in (big, small, template))
            )


if __name__ == "__main__":
    main()
