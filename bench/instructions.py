"""CPU instructions per request of the hot paths against the framework ceiling (callgrind).

    .venv/bin/python bench/instructions.py            # every case, 40 requests each
    .venv/bin/python bench/instructions.py --requests 80 --only event,get

On a shared machine wall-clock ratios swing with the neighbours' load (the same `BENCH=http`
run gave 0.42x and 0.82x an hour apart). Instructions counted by valgrind's callgrind do not:
the same code and inputs give the same count, whatever else runs. This runs each request type
in-process (Django's WSGI handler, no HTTP server, no wrk) under
``valgrind --tool=callgrind --instr-atstart=no``: setup and warm-up run uninstrumented, the
process switches counting on (``callgrind_control -i on``) for exactly N requests, then off.
The ceiling is ``bench/ceiling.py`` (Django + DRF + simplejwt: one INSERT / one SELECT by pk)
counted the same way. The ratio is ceiling instructions / Jobtrail instructions (higher is
better, 1.0 = as cheap as the ceiling): what the application's own CPU costs, before gunicorn,
the network and the database server, which `BENCH=http` adds to both sides.

Needs valgrind (`apt-get install valgrind`) and PostgreSQL (BENCH_PG; it creates and drops
<BENCH_DB_PREFIX>_instr and _instr_ceiling). Writes bench/results/instructions.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
PREFIX = os.environ.get("BENCH_DB_PREFIX", "jobtrail_bench")
CASES = {  # Jobtrail case: the ceiling's matching case
    "create": "insert",
    "event": "insert",
    "progress": "insert",
    "get": "get",
    "seed002": "get",
    "seed003": "get",
}
LABELS = {
    "create": "POST /api/v1/jobs/",
    "event": "POST /api/v1/jobs/{id}/events/ started",
    "progress": "PATCH /api/v1/jobs/{id}/ progress",
    "get": "GET /api/v1/jobs/{id}/",
    "seed002": "POST /services/rest/v1/export/job/status (seed 002)",
    "seed003": "GET /engine/api/api-jobs/{id} (seed 003)",
    "insert": "ceiling: one INSERT",
}


# --- the child: one app, one case, N requests counted ----------------------------------------


def _count(state: str) -> None:
    control = subprocess.Popen(
        ["callgrind_control", "-i", state, str(os.getpid())], stdout=subprocess.DEVNULL
    )
    while control.poll() is None:
        time.sleep(0.005)  # a blocked syscall: valgrind takes the command meanwhile


def _settle() -> None:
    """Wait until the wake-up thread (``config.outbox.Waker``) is idle before counting.

    Its first wake-ups import Celery and kombu and open its own database connection; under
    valgrind that one-off work of the warm-up spilled into the counted window, or not, from
    run to run (the same code measured 7.1M and 8.9M instructions per POST /jobs/). Once it
    waits on its condition with nothing pending, what it does next is the requests' own.
    """
    from config import outbox

    waker = outbox._waker
    thread = waker._thread if waker is not None else None
    if waker is None or thread is None or thread.ident is None:
        return
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        if frame is None or (not waker._pending and frame.f_code.co_name == "wait"):
            return
        time.sleep(0.01)


def _child(app: str, case: str, requests: int, database: str) -> None:
    os.environ["DATABASE_URL"] = f"{PG}/{database}"
    if app == "ceiling":
        sys.path.insert(0, str(ROOT / "bench"))
        import ceiling  # type: ignore[import-not-found]

        token, first = ceiling.setup(10)
        handler = ceiling.application
        cases: dict[str, Any] = {
            "get": lambda i: ("GET", f"/get/{first}", None),
            "insert": lambda i: ("POST", "/insert", {"a": i}),
        }
    else:
        sys.path.insert(0, str(ROOT))
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_SECRET_KEY="bench-instructions-" + "k" * 20 + uuid.uuid4().hex,
            DJANGO_DEBUG="0",
            DJANGO_SECURE_SSL_REDIRECT="0",
            DJANGO_ALLOWED_HOSTS="*",
            JOBTRAIL_API_RATE_LIMIT="1000000000/minute",
            JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS="1",
            CELERY_BROKER_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        )
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.handlers.wsgi import WSGIHandler

        from jobs.auth import CompanyTokenObtainPairSerializer
        from jobs.models import Company, CompanyMember
        from webhooks.services import endpoint_create

        company = Company.objects.create(name=f"Bench {uuid.uuid4().hex[:8]}")
        user = User.objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}")
        CompanyMember.objects.create(user=user, company=company)
        for n in range(2):  # "2 endpoints subscribed", as BENCH=http
            endpoint_create(company=company, url=f"http://127.0.0.1:9/hook/{n}", events=["*"])
        token = str(CompanyTokenObtainPairSerializer.get_token(user).access_token)
        handler = WSGIHandler()
    from django.test import RequestFactory

    factory = RequestFactory()

    def call(method: str, path: str, body: Any = None) -> tuple[str, bytes]:
        extra = {"HTTP_AUTHORIZATION": f"Bearer {token}", "SERVER_NAME": "127.0.0.1"}
        if body is None:
            request = factory.generic(method, path, **extra)
        else:
            request = factory.generic(
                method, path, json.dumps(body), content_type="application/json", **extra
            )
        answer: dict[str, str] = {}

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            answer["status"] = status

        response = handler(request.environ, start_response)
        body_bytes = b"".join(response)
        response.close()
        return answer["status"], body_bytes

    if app != "ceiling":
        job = json.loads(call("POST", "/api/v1/jobs/", {"type": "export"})[1])
        call("POST", f"/api/v1/jobs/{job['id']}/events/", {"status": "started"})
        fresh = []
        if case == "event":
            fresh = [
                json.loads(call("POST", "/api/v1/jobs/", {"type": "export"})[1])["id"]
                for _ in range(requests + 10)
            ]
        cases = {
            "create": lambda i: ("POST", "/api/v1/jobs/", {"type": "export"}),
            "event": lambda i: ("POST", f"/api/v1/jobs/{fresh[i]}/events/", {"status": "started"}),
            "progress": lambda i: ("PATCH", f"/api/v1/jobs/{job['id']}/", {"effected_records": i}),
            "get": lambda i: ("GET", f"/api/v1/jobs/{job['id']}/", None),
            "seed002": lambda i: (
                "POST",
                "/services/rest/v1/export/job/status",
                {"jobCode": job["code"]},
            ),
            "seed003": lambda i: ("GET", f"/engine/api/api-jobs/{job['id']}", None),
        }
    status = ""
    for i in range(10):  # warm-up: caches, prepared statements, lazy imports
        status, body = call(*cases[case](i))
    assert status.startswith("2"), (case, status, body[:300])
    if app != "ceiling":
        _settle()
    _count("on")
    for i in range(10, 10 + requests):
        status, body = call(*cases[case](i))
    _count("off")
    assert status.startswith("2"), (case, status, body[:300])


# --- the parent --------------------------------------------------------------------------------


def _psql(*statements: str) -> None:
    for statement in statements:
        subprocess.run(
            ["psql", "-q", f"{PG}/postgres", "-c", statement],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _measure(app: str, case: str, requests: int, database: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                app,
                case,
                str(requests),
                database,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise SystemExit(f"{app} {case} failed:\n{run.stderr[-3000:]}")
        totals = [
            int(line.split()[1])
            for path in Path(tmp).glob("callgrind.out*")
            for line in path.read_text().splitlines()
            if line.startswith("totals:")
        ]
    return sum(totals) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "instructions.json"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        app, case, requests, database = args.child
        _child(app, case, int(requests), database)
        return
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    app_db, ceiling_db = f"{PREFIX}_instr", f"{PREFIX}_instr_ceiling"
    _psql(f"DROP DATABASE IF EXISTS {app_db}", f"DROP DATABASE IF EXISTS {ceiling_db}")
    _psql(f"CREATE DATABASE {app_db}", f"CREATE DATABASE {ceiling_db}")
    try:
        env = {**os.environ, "DATABASE_URL": f"{PG}/{app_db}", "DJANGO_DEBUG": "1"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        ceiling_counts: dict[str, float] = {}
        rows = []
        for case in [c.strip() for c in args.only.split(",") if c.strip()]:
            base = CASES[case]
            if base not in ceiling_counts:
                ceiling_counts[base] = _measure("ceiling", base, args.requests, ceiling_db)
            ours = _measure("jobtrail", case, args.requests, app_db)
            row = {
                "path": LABELS[case],
                "baseline": LABELS.get(base, "ceiling: one SELECT by pk"),
                "baseline_instructions": round(ceiling_counts[base]),
                "instructions": round(ours),
                "ratio": round(ceiling_counts[base] / ours, 3),
            }
            rows.append(row)
            print(
                f"{row['path']}: {ours / 1e6:.2f}M instructions/request, ceiling "
                f"{ceiling_counts[base] / 1e6:.2f}M: {row['ratio']}x",
                flush=True,
            )
    finally:
        _psql(f"DROP DATABASE IF EXISTS {app_db}", f"DROP DATABASE IF EXISTS {ceiling_db}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "scenario": "instructions",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "requests_per_case": args.requests,
        "method": "valgrind callgrind, instructions counted for N in-process requests only",
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
