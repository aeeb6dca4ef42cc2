"""Query budgets of the hot paths, whatever the company subscribes and whatever a job holds.

Every SQL statement the request sends counts, BEGIN/COMMIT/SAVEPOINT included (Django logs
them). A poll (GET /api/v1/jobs/{id}/, seed 002's status POST, seed 003's job GET) is at most 3
statements: the authenticated user with its membership and company and, on the GETs, the job
with its report joined, in one; seed 002 reads the job by code in a second; seed 003's
completed-with-errors job adds the failed push results it lists. An event POST is at most 8.

The request writes the job and its event only: the relay fans the event out to the webhook
endpoints in the worker (issue 10, item 1), so no statement on a ``webhooks_*`` table runs in the
request (``OUTBOX_STATEMENTS`` = 0), whatever the number of endpoints.
"""

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Company, Job, JobStatus, PushStatus
from reports.models import Report, ReportStatus
from tests.conftest import bearer_client
from tests.factories import ApiClientFactory, CompanyFactory, JobFactory, job_in_status
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

POLL_BUDGET = 3
EVENT_POST_BUDGET = 8
OUTBOX_STATEMENTS = 0  # the relay fans out in the worker: no webhooks_* statement here
ENDPOINT_COUNTS = [0, 2, 50]


def _push(job: Job, ident: str, status: PushStatus) -> None:
    services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id=ident,
            status=status,
            validation_errors=[{"field": "amount", "message": "negative"}]
            if status == PushStatus.FAILED
            else [],
        ),
    )


@pytest.fixture
def tenant(db: None) -> dict[str, Any]:
    company = CompanyFactory(name="Budget Co")
    user = ApiClientFactory(company=company)
    return {"company": company, "user": user, "api": bearer_client(user)}


def _subscribe(company: Company, endpoints: int) -> None:
    WebhookEndpoint.objects.bulk_create(
        WebhookEndpoint(
            company=company,
            url=f"https://example.com/hook/{n}",
            events=["*"],
            secret="whsec_x",
        )
        for n in range(endpoints)
    )


def _outbox(captured: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in captured if '"webhooks_' in q["sql"]]


def _run(call: Callable[[], Any]) -> tuple[Any, list[dict[str, str]]]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return response, queries.captured_queries


def _within(captured: list[dict[str, str]], budget: int) -> int:
    """Assert the budget (outbox statements apart); return the statements counted."""
    outbox = _outbox(captured)
    assert len(outbox) <= OUTBOX_STATEMENTS, outbox
    counted = len(captured) - len(outbox)
    assert counted <= budget, "\n".join(q["sql"][:160] for q in captured)
    return counted


# --- polls --------------------------------------------------------------------------------------


def _polls(api: APIClient, job: Job) -> dict[str, Callable[[], Any]]:
    return {
        "v1 job": lambda: api.get(f"/api/v1/jobs/{job.pk}/"),
        "seed 002 status": lambda: api.post(
            "/services/rest/v1/export/job/status", {"jobCode": job.code}, format="json"
        ),
        "seed 003 api job": lambda: api.get(f"/engine/api/api-jobs/{job.pk}"),
    }


@pytest.mark.parametrize("endpoints", ENDPOINT_COUNTS)
@pytest.mark.parametrize("status", [JobStatus.PROCESSING, JobStatus.COMPLETED_WITH_ERRORS])
def test_a_poll_is_at_most_3_queries(
    tenant: dict[str, Any],
    endpoints: int,
    status: JobStatus,
    django_assert_max_num_queries: Any,
) -> None:
    _subscribe(tenant["company"], endpoints)
    job = job_in_status(JobStatus.PROCESSING, company=tenant["company"])
    for n in range(3):
        _push(job, f"ok-{n}", PushStatus.SUCCESS)
    _push(job, "bad-1", PushStatus.FAILED)
    if status == JobStatus.COMPLETED_WITH_ERRORS:
        services.job_complete_with_errors(job_id=job.pk)

    for name, poll in _polls(tenant["api"], job).items():
        with django_assert_max_num_queries(POLL_BUDGET):
            response = poll()
        assert response.status_code == 200, (name, response.content[:300])


def test_a_poll_reads_the_job_once_with_its_report(
    tenant: dict[str, Any], django_assert_num_queries: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=tenant["company"])

    # one statement: the user (membership, company) and the job it asks for (report joined)
    with django_assert_num_queries(1):
        body = tenant["api"].get(f"/api/v1/jobs/{job.pk}/").json()

    assert body["report"]["status"] == "pending"
    assert body["id"] == str(job.pk)


def test_a_poll_of_a_ready_report_links_it_in_the_same_statement(
    tenant: dict[str, Any], django_assert_num_queries: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=tenant["company"])
    Report.objects.update_or_create(
        job=job, defaults={"status": ReportStatus.READY, "ready_at": timezone.now()}
    )

    with django_assert_num_queries(1):
        v1 = tenant["api"].get(f"/api/v1/jobs/{job.pk}/").json()
    with django_assert_num_queries(1):
        seed003 = tenant["api"].get(f"/engine/api/api-jobs/{job.pk}").json()
    with django_assert_num_queries(1):
        seed002 = (
            tenant["api"]
            .post("/services/rest/v1/export/job/status", {"jobCode": job.code}, format="json")
            .json()
        )

    assert v1["report"]["status"] == "ready"
    assert "/reports/download/" in v1["report"]["url"]
    assert seed003["id"] == str(job.pk)
    assert seed002["status"] == "SUCCESSFUL"
    assert "/reports/download/" in seed002["filePath"]


def test_a_poll_of_another_companys_job_is_a_404_in_one_statement(
    tenant: dict[str, Any], django_assert_num_queries: Any
) -> None:
    other = job_in_status(JobStatus.PROCESSING, company=CompanyFactory(name="Other Co"))

    with django_assert_num_queries(1):
        response = tenant["api"].get(f"/api/v1/jobs/{other.pk}/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/problem+json")

    with django_assert_num_queries(1):
        seed002 = tenant["api"].post(
            "/services/rest/v1/export/job/status", {"jobCode": other.code}, format="json"
        )
    assert seed002.status_code == 200
    assert seed002.json()["successful"] is False


# --- a job read never scans push results --------------------------------------------------------


@pytest.mark.parametrize("results", [0, 1, 40])
def test_a_job_read_runs_no_query_on_push_results(tenant: dict[str, Any], results: int) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=tenant["company"])
    for n in range(results):
        _push(job, f"p-{n}", PushStatus.FAILED if n % 4 == 0 else PushStatus.SUCCESS)
    api = tenant["api"]
    reads = {
        "detail": lambda: api.get(f"/api/v1/jobs/{job.pk}/"),
        "list": lambda: api.get("/api/v1/jobs/"),
        "seed 002": lambda: api.post(
            "/services/rest/v1/export/job/status", {"jobCode": job.code}, format="json"
        ),
    }
    failed = len(range(0, results, 4))

    for name, read in reads.items():
        response, captured = _run(read)

        assert response.status_code == 200, name
        assert not [q["sql"] for q in captured if "jobs_pushresult" in q["sql"]], name
    detail = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["push_results"] == {"success": results - failed, "failed": failed}


# --- writes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoints", ENDPOINT_COUNTS)
@pytest.mark.parametrize("idempotency_key", [False, True], ids=["plain", "idempotency-key"])
def test_an_event_post_is_at_most_8_queries(
    tenant: dict[str, Any],
    endpoints: int,
    idempotency_key: bool,
    django_assert_max_num_queries: Any,
) -> None:
    _subscribe(tenant["company"], endpoints)
    api = tenant["api"]
    for event in ({"status": "started"}, {"status": "failed", "failure_reason": "job_expired"}):
        job = JobFactory(company=tenant["company"], total_records=10)
        extra = {"HTTP_IDEMPOTENCY_KEY": f"k-{job.pk}"} if idempotency_key else {}

        with django_assert_max_num_queries(EVENT_POST_BUDGET + OUTBOX_STATEMENTS) as captured:
            response = api.post(f"/api/v1/jobs/{job.pk}/events/", event, format="json", **extra)

        assert response.status_code == 201, response.content[:300]
        assert response.json()["job"]["status"] in ("processing", "failed")
        _within(captured.captured_queries, EVENT_POST_BUDGET)


@pytest.mark.parametrize("endpoints", ENDPOINT_COUNTS)
def test_the_event_post_budget_does_not_grow_with_endpoints(
    tenant: dict[str, Any], endpoints: int
) -> None:
    """Same statements with 0, 2 or 50 endpoints (outbox statements included)."""
    api = tenant["api"]
    baseline_job = JobFactory(company=tenant["company"])
    _, baseline = _run(
        lambda: api.post(
            f"/api/v1/jobs/{baseline_job.pk}/events/", {"status": "started"}, format="json"
        )
    )
    _subscribe(tenant["company"], endpoints)
    job = JobFactory(company=tenant["company"])

    _, captured = _run(
        lambda: api.post(f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}, format="json")
    )

    assert len(captured) - len(_outbox(captured)) == len(baseline) - len(_outbox(baseline))
    assert len(_outbox(captured)) <= OUTBOX_STATEMENTS


@pytest.mark.parametrize("endpoints", ENDPOINT_COUNTS)
def test_a_progress_patch_is_at_most_8_queries(tenant: dict[str, Any], endpoints: int) -> None:
    _subscribe(tenant["company"], endpoints)
    job = job_in_status(JobStatus.PROCESSING, company=tenant["company"], total_records=10)

    response, captured = _run(
        lambda: tenant["api"].patch(
            f"/api/v1/jobs/{job.pk}/", {"effected_records": 4}, format="json"
        )
    )

    assert response.status_code == 200
    assert response.json()["effected_records"] == 4
    _within(captured, EVENT_POST_BUDGET)


@pytest.mark.parametrize("idempotency_key", [False, True], ids=["plain", "idempotency-key"])
def test_an_idempotency_key_costs_one_statement(
    tenant: dict[str, Any], idempotency_key: bool
) -> None:
    """The key's claim and its stored answer are one INSERT in the request's transaction."""
    api = tenant["api"]
    job = JobFactory(company=tenant["company"])
    extra = {"HTTP_IDEMPOTENCY_KEY": "one-insert"} if idempotency_key else {}

    _, captured = _run(
        lambda: api.post(
            f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}, format="json", **extra
        )
    )

    key_statements = [q["sql"] for q in captured if "jobs_idempotencykey" in q["sql"]]
    assert len(key_statements) == (1 if idempotency_key else 0), key_statements


# --- counts live on the job ---------------------------------------------------------------------


def test_push_results_are_counted_on_the_job_once(tenant: dict[str, Any]) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=tenant["company"])
    api = tenant["api"]
    url = f"/api/v1/jobs/{job.pk}/push-results/"
    pushes = [("a", "success"), ("b", "failed"), ("a", "success"), ("c", "success")]

    answers = [
        api.post(
            url, {"data": {"pushCommunicationId": ident, "status": status}}, format="json"
        ).status_code
        for ident, status in pushes
    ]

    assert answers == [201, 201, 200, 201]  # the repeated "a" is not counted again
    job.refresh_from_db()
    assert (job.push_success_count, job.push_failed_count) == (2, 1)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["push_results"] == {
        "success": 2,
        "failed": 1,
    }


class _Editor:
    """What the migration's RunPython uses of a schema editor (usable inside a test's atomic)."""

    connection = connection

    def execute(self, sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)


def test_the_migration_counts_existing_push_results(tenant: dict[str, Any]) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=tenant["company"])
    other = job_in_status(JobStatus.PROCESSING, company=tenant["company"])
    for n in range(3):
        _push(job, f"s-{n}", PushStatus.SUCCESS)
    _push(job, "f-1", PushStatus.FAILED)
    Job.objects.update(push_success_count=0, push_failed_count=0)  # as before the migration
    migration = importlib.import_module("jobs.migrations.0005_job_push_counts")
    from django.apps import apps

    migration.backfill(apps, _Editor())

    job.refresh_from_db()
    other.refresh_from_db()
    assert (job.push_success_count, job.push_failed_count) == (3, 1)
    assert (other.push_success_count, other.push_failed_count) == (0, 0)


@pytest.mark.parametrize("endpoints", ENDPOINT_COUNTS)
@pytest.mark.parametrize("by", ["id", "code"])
def test_a_seed_000_event_post_is_at_most_8_queries(
    tenant: dict[str, Any], endpoints: int, by: str
) -> None:
    _subscribe(tenant["company"], endpoints)
    job = JobFactory(company=tenant["company"])
    ident = str(job.pk) if by == "id" else job.code

    response, captured = _run(
        lambda: tenant["api"].post(
            "/api/v1/export-job-events/",
            {"jobId": ident, "event": "started"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"seed-{ident}",
        )
    )

    assert response.status_code == 201, response.content[:300]
    assert response.json()["status"] == "processing"
    # by code: one more read (the code is looked up, then the job locked by its id)
    _within(captured, EVENT_POST_BUDGET + (1 if by == "code" else 0))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/jobs/{job}/events/", {"status": "started"}),
        ("post", "/api/v1/jobs/{job}/events/", {"status": "completed", "effected_records": 3}),
        ("patch", "/api/v1/jobs/{job}/", {"effected_records": 2, "message": "2 pushed"}),
    ],
    ids=["started", "completed", "progress"],
)
def test_a_job_change_is_two_statements_and_no_transaction_on_postgresql(
    method: str, path: str, body: dict[str, Any]
) -> None:
    """Outside a transaction (as a request runs) a job change reads the API client with the job
    (no lock, one statement) and writes the job and its event in one statement that applies
    only if the job's last_sequence is still the one read (``jobs.services._job_change``)."""
    company = CompanyFactory(name="Optimistic Co")
    api = bearer_client(ApiClientFactory(company=company))
    job = JobFactory(company=company, total_records=10)
    url = path.format(job=job.pk)

    response, captured = _run(lambda: getattr(api, method)(url, body, format="json"))

    assert response.status_code in (200, 201), response.content[:300]
    sqls = [q["sql"] for q in captured]
    assert len(sqls) == 2, "\n".join(s[:160] for s in sqls)
    assert not any(s.strip().upper() in ("BEGIN", "COMMIT") for s in sqls)
    assert 'FROM "auth_user" u' in sqls[0] and 'j."id"' in sqls[0]  # the job, with the user
    assert "FOR UPDATE" not in sqls[0]
    assert sqls[1].startswith('WITH changed AS (UPDATE "jobs_job"')
    job.refresh_from_db()
    event = job.events.get(sequence=job.last_sequence)
    assert event.snapshot["effected_records"] == job.effected_records
    # the snapshot is the job as written: auto_now stamps included
    assert event.snapshot["updated_at"] == job.updated_at.isoformat().replace("+00:00", "Z")
    assert event.snapshot["expires_at"] == (
        job.expires_at.isoformat().replace("+00:00", "Z") if job.expires_at else None
    )
    assert response.json()["effected_records" if method == "patch" else "job"] is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_new_job_is_two_statements_and_no_transaction_on_postgresql() -> None:
    """The API client's read, then the job's INSERT (skipped if its code is taken) and its
    ``created`` event's INSERT in one statement; a taken code writes nothing (409)."""
    company = CompanyFactory(name="New Job Co")
    api = bearer_client(ApiClientFactory(company=company))
    body = {"type": "export", "code": "ONE-STATEMENT", "total_records": 5}

    response, captured = _run(lambda: api.post("/api/v1/jobs/", body, format="json"))

    assert response.status_code == 201, response.content[:300]
    sqls = [q["sql"] for q in captured]
    assert len(sqls) == 2, "\n".join(s[:160] for s in sqls)
    assert sqls[1].startswith('WITH changed AS (INSERT INTO "jobs_job"')
    job = Job.objects.get(pk=response.json()["id"])
    event = job.events.get()
    assert (event.sequence, event.status, job.last_sequence) == (1, "created", 1)
    assert event.snapshot["created_at"] == job.created_at.isoformat().replace("+00:00", "Z")
    assert event.snapshot == response.json()

    again = api.post("/api/v1/jobs/", body, format="json")
    assert again.status_code == 409, again.content[:300]
    assert Job.objects.filter(code="ONE-STATEMENT").count() == 1
    assert job.events.count() == 1
