"""Every API error path answers a problem document, with DEBUG on and off.

Unknown routes, wrong methods, missing trailing slashes, stale refresh tokens, unreadable
charsets, chunked bodies and a database that is gone: each answers its status with
``application/problem+json``, a stable ``code`` and its headers (Allow, Location, Retry-After),
never Django's HTML debug pages and never a 500. Django reads ``DEBUG`` per request, so
``override_settings`` shows the DEBUG-dependent paths in-process; tests/e2e/test_error_paths_e2e.py
walks them against a live gunicorn.
"""

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from jobs.auth import CompanyTokenObtainPairSerializer
from jobs.models import Company, IdempotencyKey, Job, JobEvent, JobStatus
from tests.conftest import bearer_client
from tests.e2e.stack import free_port
from tests.factories import ApiClientFactory, CompanyFactory, JobFactory
from tests.relay import run_relay
from webhooks.models import WebhookDelivery, WebhookEndpoint

PROBLEM = "application/problem+json"
MIB = 1024 * 1024
ZERO = "00000000-0000-0000-0000-000000000000"

debug_modes = pytest.mark.parametrize(
    "debug",
    [pytest.param(True, id="debug-on"), pytest.param(False, id="debug-off")],
    indirect=True,
)


@pytest.fixture
def debug(request: pytest.FixtureRequest) -> Iterator[bool]:
    """DEBUG as parametrized (Django reads it per request)."""
    with override_settings(DEBUG=request.param):
        yield request.param


@pytest.fixture
def api(api: APIClient) -> APIClient:
    api.raise_request_exception = False
    return api


@pytest.fixture
def job(company: Company) -> Job:
    return JobFactory(company=company, total_records=10)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = json.loads(response.content)
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"/problems/{code}"
    assert body["title"] and body["detail"]
    return body


def anonymous() -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    return client


# --- 1. unknown routes ------------------------------------------------------------------------


@debug_modes
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope/",
        "/api/v1/jobs/not-a-uuid/",
        "/api/v2/jobs/",
        "/api/",
        "/api",
        "/services/nope",
        "/services/rest/v1/export/job/status/",  # the seed path has no trailing slash
        "/engine/api/api-jobs/not-a-uuid",
        "/engine/",
        "/api/v1/jobs/%0Anewline/",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_route_is_a_404_problem(
    api: APIClient, debug: bool, path: str, method: str
) -> None:
    response = getattr(api, method)(path)

    assert_problem(response, 404, "not_found")


@debug_modes
def test_unknown_admin_route_keeps_the_html_404(admin_client: Any, debug: bool) -> None:
    response = admin_client.get("/admin/nope/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- 2. wrong method --------------------------------------------------------------------------


@debug_modes
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/jobs/", {"GET", "POST"}),
        ("put", "/api/v1/jobs/{job}/", {"GET", "PATCH"}),
        ("get", "/api/v1/jobs/{job}/cancel/", {"POST"}),
        ("get", "/api/v1/auth/token/", {"POST"}),
        ("delete", "/api/v1/export-job-events/", {"POST"}),
        ("get", "/services/rest/v1/export/job/status", {"POST"}),
        ("post", "/engine/api/api-jobs/{job}", {"GET"}),
        ("post", "/api/v1/webhook-event-types/", {"GET"}),
    ],
)
def test_wrong_method_is_a_405_problem_with_allow(
    api: APIClient, job: Job, debug: bool, method: str, path: str, allowed: set[str]
) -> None:
    response = getattr(api, method)(path.format(job=job.pk))

    assert_problem(response, 405, "method_not_allowed")
    assert allowed <= set(response["Allow"].split(", "))
    assert method.upper() not in response["Allow"]


# --- 3. missing trailing slash ----------------------------------------------------------------


@debug_modes
@pytest.mark.parametrize("method", ["get", "post", "patch", "put", "delete"])
@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/v1/jobs", ""), ("/api/v1/jobs/{job}", ""), ("/api/v1/jobs", "status=pending&x=%C3%A9")],
)
def test_missing_trailing_slash_is_a_308_to_the_slashed_path(
    api: APIClient, job: Job, debug: bool, method: str, path: str, query: str
) -> None:
    before = Job.objects.count()
    url = path.format(job=job.pk) + (f"?{query}" if query else "")

    response = api.generic(
        method.upper(), url, json.dumps({"type": "export"}), content_type="application/json"
    )

    assert response.status_code == 308, response.content[:300]
    expected = path.format(job=job.pk) + "/" + (f"?{query}" if query else "")
    assert response["Location"] == expected
    assert Job.objects.count() == before


@debug_modes
def test_following_the_308_keeps_the_post(api: APIClient, debug: bool) -> None:
    first = api.post("/api/v1/jobs", {"type": "export", "code": "SLASH-1"}, format="json")
    assert first.status_code == 308

    response = api.post(first["Location"], {"type": "export", "code": "SLASH-1"}, format="json")

    assert response.status_code == 201, response.content
    assert Job.objects.filter(code="SLASH-1").count() == 1


@debug_modes
def test_missing_slash_on_a_path_that_does_not_exist_is_404(api: APIClient, debug: bool) -> None:
    assert_problem(api.post("/api/v1/nope", {}, format="json"), 404, "not_found")


# --- 4. stale refresh tokens ------------------------------------------------------------------


@debug_modes
@pytest.mark.parametrize("change", ["deleted", "deactivated"])
def test_refresh_token_of_a_gone_user_is_a_401_problem(
    company: Company, debug: bool, change: str
) -> None:
    user = ApiClientFactory(company=company)
    refresh: RefreshToken = CompanyTokenObtainPairSerializer.get_token(user)  # type: ignore[assignment]
    if change == "deleted":
        user.delete()
    else:
        user.is_active = False
        user.save()

    response = anonymous().post(
        "/api/v1/auth/token/refresh/", {"refresh": str(refresh)}, format="json"
    )

    body = assert_problem(response, 401, "invalid_token")
    assert "access" not in body


# --- 5. charsets ------------------------------------------------------------------------------

# Every endpoint that parses a JSON body: (method, path, body).
JSON_ENDPOINTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "token": ("post", "/api/v1/auth/token/", {"username": "x", "password": "y"}),
    "token-refresh": ("post", "/api/v1/auth/token/refresh/", {"refresh": "x"}),
    "jobs": ("post", "/api/v1/jobs/", {"type": "export"}),
    "job-patch": ("patch", "/api/v1/jobs/{job}/", {"message": "x"}),
    "events": ("post", "/api/v1/jobs/{job}/events/", {"status": "started"}),
    "cancel": ("post", "/api/v1/jobs/{job}/cancel/", {}),
    "push-results": (
        "post",
        "/api/v1/jobs/{job}/push-results/",
        {"data": {"pushCommunicationId": "p1", "status": "success"}},
    ),
    "export-job-events": (
        "post",
        "/api/v1/export-job-events/",
        {"jobId": "{job}", "event": "started"},
    ),
    "export-job-status": ("post", "/services/rest/v1/export/job/status", {"jobCode": "x"}),
    "webhook-endpoints": (
        "post",
        "/api/v1/webhook-endpoints/",
        {"url": "https://example.com/h", "events": ["jobs.completed"]},
    ),
    "webhook-endpoint-patch": ("patch", "/api/v1/webhook-endpoints/{endpoint}/", {}),
    "redeliver-failed": (
        "post",
        "/api/v1/webhook-endpoints/{endpoint}/redeliver-failed/",
        {"since": "2020-01-01T00:00:00Z"},
    ),
}


@pytest.fixture
def endpoint(company: Company) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        company=company, url="https://example.com/hook", events=["*"], secret="whsec_x"
    )


def counts() -> tuple[int, int, int]:
    return Job.objects.count(), JobEvent.objects.count(), WebhookEndpoint.objects.count()


@debug_modes
@pytest.mark.parametrize(
    "charset", ["rot13", "base64", "utf-7", "garbage", "latin-1", "utf-16", "x" * 100]
)
@pytest.mark.parametrize("name", list(JSON_ENDPOINTS))
def test_unusable_charset_is_a_415_problem_naming_it(
    api: APIClient,
    job: Job,
    endpoint: WebhookEndpoint,
    debug: bool,
    name: str,
    charset: str,
) -> None:
    method, path, body = JSON_ENDPOINTS[name]
    ids = {"job": str(job.pk), "endpoint": str(endpoint.pk)}
    before = counts()

    response = getattr(api, method)(
        fill(path, ids),
        json.dumps(fill(body, ids)),
        content_type=f"application/json; charset={charset}",
    )

    problem = assert_problem(response, 415, "unsupported_charset")
    assert charset[:40] in problem["detail"]
    assert (
        Job.objects.count(),
        JobEvent.objects.count(),
        WebhookEndpoint.objects.count(),
    ) == before


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("application/json; charset=rot13", "unsupported_charset"),
        ("application/json; charset=base64", "unsupported_charset"),
        # an RFC 2231 parameter in an unknown encoding: Django cannot parse the header at all
        ("application/json; charset*=x'y'z", "unsupported_media_type"),
        ("application/json; foo*=bogus''v", "unsupported_media_type"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/services/rest/v1/export/job/status"])
def test_a_content_type_django_cannot_use_is_415_not_500(
    api: APIClient, content_type: str, code: str, path: str
) -> None:
    """Through the WSGI application gunicorn serves: Django reads the header (and decodes the
    query string with its charset) while it builds the request, before any middleware runs."""
    from config.wsgi import application

    body = b'{"type": "export"}'
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "a=%41b",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": api._credentials["HTTP_AUTHORIZATION"],
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    started: list[str] = []
    # as Django's test client does: the handler's end-of-request signal would close the test's
    # database connection (and its transaction)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        answer = application(environ, lambda status, headers, *_: started.append(status))
        content = b"".join(answer)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

    assert started[0].startswith("415 "), content
    assert json.loads(content)["code"] == code
    assert not Job.objects.exists()


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", '"utf-8"', "UTF8 "])
def test_utf8_in_any_spelling_is_read(api: APIClient, charset: str) -> None:
    response = api.post(
        "/api/v1/jobs/",
        json.dumps({"type": "export", "metadata": {"name": "Zoë"}}, ensure_ascii=False).encode(),
        content_type=f"application/json; charset={charset}",
    )

    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == {"name": "Zoë"}


# --- 6. chunked bodies (in-process; tests/e2e sends real chunked requests to gunicorn) ---------


def _chunked(api: APIClient, body: bytes, *, terminated: bool = True) -> Any:
    extra: dict[str, Any] = {
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
    }
    if terminated:
        extra["wsgi.input_terminated"] = True
    return api.generic("POST", "/api/v1/jobs/", b"", content_type="application/json", **extra)


@debug_modes
def test_chunked_body_is_read_when_the_server_ends_the_input(api: APIClient, debug: bool) -> None:
    response = _chunked(api, json.dumps({"type": "export", "code": "CHUNKED-1"}).encode())

    assert response.status_code == 201, response.content
    assert response.json()["code"] == "CHUNKED-1"


@debug_modes
def test_chunked_body_over_1_mib_is_413(api: APIClient, debug: bool) -> None:
    body = json.dumps({"type": "export", "metadata": {"x": "a" * MIB}}).encode()

    assert_problem(_chunked(api, body), 413, "body_too_large")
    assert not Job.objects.exists()


@debug_modes
def test_chunked_body_without_an_ended_input_is_411(api: APIClient, debug: bool) -> None:
    body = json.dumps({"type": "export"}).encode()

    assert_problem(_chunked(api, body, terminated=False), 411, "length_required")
    assert not Job.objects.exists()


class _MalformedChunks(io.RawIOBase):
    """What gunicorn's chunked reader does with ``zz\\r\\n`` as a chunk size."""

    def read(self, size: int = -1) -> bytes:
        from gunicorn.http.errors import InvalidChunkSize

        raise InvalidChunkSize(b"zz")


@debug_modes
def test_a_malformed_chunked_body_is_a_400_problem(api: APIClient, debug: bool) -> None:
    extra: dict[str, Any] = {
        "CONTENT_LENGTH": "",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": _MalformedChunks(),
        "wsgi.input_terminated": True,
    }
    response = api.generic("POST", "/api/v1/jobs/", b"", content_type="application/json", **extra)

    assert_problem(response, 400, "malformed_chunked_body")
    assert not Job.objects.exists()


def test_chunked_body_of_exactly_1_mib_is_read(api: APIClient) -> None:
    start = b'{"type": "export"}'
    body = start + b" " * (MIB - len(start))  # JSON may end in whitespace
    assert len(body) == MIB

    assert _chunked(api, body).status_code == 201


# --- 7. the database is gone ------------------------------------------------------------------

# Every API endpoint: (method, path, body or None).
ALL_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("post", "/api/v1/auth/token/", {"username": "x", "password": "y"}),
    ("post", "/api/v1/auth/token/refresh/", {"refresh": "{refresh}"}),
    ("get", "/api/v1/jobs/", None),
    ("post", "/api/v1/jobs/", {"type": "export"}),
    ("get", "/api/v1/jobs/{job}/", None),
    ("patch", "/api/v1/jobs/{job}/", {"message": "x"}),
    ("get", "/api/v1/jobs/{job}/events/", None),
    ("post", "/api/v1/jobs/{job}/events/", {"status": "started"}),
    ("post", "/api/v1/jobs/{job}/cancel/", {}),
    ("get", "/api/v1/jobs/{job}/push-results/", None),
    (
        "post",
        "/api/v1/jobs/{job}/push-results/",
        {"data": {"pushCommunicationId": "p", "status": "success"}},
    ),
    ("get", "/api/v1/jobs/{job}/report/", None),
    ("post", "/api/v1/export-job-events/", {"jobId": "{job}", "event": "started"}),
    ("post", "/services/rest/v1/export/job/status", {"jobCode": "x"}),
    ("get", "/engine/api/api-jobs/{job}", None),
    ("get", "/api/v1/webhook-endpoints/", None),
    (
        "post",
        "/api/v1/webhook-endpoints/",
        {"url": "https://example.com/h", "events": ["jobs.completed"]},
    ),
    ("get", "/api/v1/webhook-endpoints/{endpoint}/", None),
    ("patch", "/api/v1/webhook-endpoints/{endpoint}/", {"description": "x"}),
    ("delete", "/api/v1/webhook-endpoints/{endpoint}/", None),
    ("post", "/api/v1/webhook-endpoints/{endpoint}/rotate-secret/", None),
    (
        "post",
        "/api/v1/webhook-endpoints/{endpoint}/redeliver-failed/",
        {"since": "2020-01-01T00:00:00Z"},
    ),
    ("get", "/api/v1/webhook-deliveries/", None),
    ("get", f"/api/v1/webhook-deliveries/{ZERO}/", None),
    ("post", f"/api/v1/webhook-deliveries/{ZERO}/redeliver/", None),
    ("get", "/api/v1/webhook-event-types/", None),
]


@contextmanager
def database_gone(tmp_path: Path) -> Iterator[None]:
    """Point the default connection at a database that cannot be reached (a real failure).

    The next query connects anew and fails: PostgreSQL on a port where nothing listens, SQLite
    in a folder that does not exist. (The in-memory SQLite test database lives as long as its
    connection, so that connection is set aside rather than closed.)
    """
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()
    kept = connection.connection if in_memory else None
    if in_memory:
        connection.connection = None
    else:
        connection.close()
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "missing-folder" / "db.sqlite3")
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))  # nothing listens there
    try:
        yield
    finally:
        settings_dict.clear()
        settings_dict.update(saved)
        if in_memory:
            connection.connection = kept
        else:
            connection.close()


def fill(value: Any, ids: dict[str, str]) -> Any:
    """Put ids into the ``{name}`` placeholders of a path or a JSON body."""
    text = json.dumps(value)
    for name, ident in ids.items():
        text = text.replace(f"{{{name}}}", ident)
    return json.loads(text)


@pytest.fixture
def live_data(transactional_db: None) -> dict[str, str]:
    company = CompanyFactory(name="Outage Co")
    user = ApiClientFactory(company=company)
    job = JobFactory(company=company)
    endpoint = WebhookEndpoint.objects.create(
        company=company, url="https://example.com/hook", events=["*"], secret="whsec_x"
    )
    refresh = CompanyTokenObtainPairSerializer.get_token(user)
    return {
        "job": str(job.pk),
        "endpoint": str(endpoint.pk),
        "refresh": str(refresh),
        "access": str(refresh.access_token),  # type: ignore[attr-defined]
    }


def _client(live_data: dict[str, str]) -> APIClient:
    client = anonymous()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {live_data['access']}")
    return client


@pytest.mark.parametrize("debug", [True, False], ids=["debug-on", "debug-off"])
@pytest.mark.parametrize("idempotency_key", [False, True], ids=["plain", "idempotency-key"])
def test_every_endpoint_answers_503_with_retry_after_while_the_database_is_gone(
    live_data: dict[str, str], tmp_path: Path, debug: bool, idempotency_key: bool
) -> None:
    client = _client(live_data)
    extra = {"HTTP_IDEMPOTENCY_KEY": "k-1"} if idempotency_key else {}
    with database_gone(tmp_path), override_settings(DEBUG=debug):
        for method, path, body in ALL_ENDPOINTS:
            url = fill(path, live_data)
            response = getattr(client, method)(url, fill(body, live_data), format="json", **extra)

            assert_problem(response, 503, "database_unavailable")
            assert response["Retry-After"] == "5", (method, url)


def test_the_api_answers_again_once_the_database_is_back(
    live_data: dict[str, str], tmp_path: Path
) -> None:
    client = _client(live_data)
    with database_gone(tmp_path):
        assert client.post("/api/v1/jobs/", {"type": "export"}, format="json").status_code == 503

    response = client.post("/api/v1/jobs/", {"type": "export"}, format="json")

    assert response.status_code == 201, response.content
    assert Job.objects.count() == 2  # the live_data job and this one: the 503 wrote nothing


# --- 8. no half-commits: nothing is read or written after a write commits ---------------------


# A job change or a new job on PostgreSQL outside a transaction is one statement (the job's
# UPDATE or INSERT and its event's INSERT, ``config.rows._WithLog``): it commits when it ends.
ONE_STATEMENT_CHANGE = "WITH changed AS ("


def _after_last_commit(queries: list[dict[str, str]]) -> list[str]:
    sqls = [q["sql"] for q in queries]
    commits = [
        i
        for i, sql in enumerate(sqls)
        if sql.strip().upper() == "COMMIT" or sql.startswith(ONE_STATEMENT_CHANGE)
    ]
    assert commits, sqls
    return sqls[commits[-1] + 1 :]


@pytest.fixture
def write_data(transactional_db: None) -> dict[str, Any]:
    company = CompanyFactory(name="Writes Co")
    user = ApiClientFactory(company=company)
    job = JobFactory(company=company, total_records=10)
    endpoint = WebhookEndpoint.objects.create(
        company=company, url="https://example.com/hook", events=["*"], secret="whsec_x"
    )
    client = bearer_client(user)
    client.raise_request_exception = False
    # a failed delivery, so redeliveries have something to do
    client.post(f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}, format="json")
    run_relay()
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint).first()
    assert delivery is not None
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    return {"client": client, "job": job, "endpoint": endpoint, "delivery": delivery}


WRITES: dict[str, tuple[str, str, Any, int]] = {
    "job-create": ("post", "/api/v1/jobs/", {"type": "export", "total_records": 3}, 201),
    "job-patch": ("patch", "/api/v1/jobs/{job}/", {"effected_records": 2}, 200),
    "job-event": ("post", "/api/v1/jobs/{job}/events/", {"status": "completed"}, 201),
    "job-cancel": ("post", "/api/v1/jobs/{job}/cancel/", {"message": "stop"}, 200),
    "push-result": (
        "post",
        "/api/v1/jobs/{job}/push-results/",
        {"data": {"pushCommunicationId": "p-9", "status": "success"}},
        201,
    ),
    "seed-000-event": (
        "post",
        "/api/v1/export-job-events/",
        {"jobId": "{job}", "event": "completed"},
        201,
    ),
    "endpoint-create": (
        "post",
        "/api/v1/webhook-endpoints/",
        {"url": "http://127.0.0.1:9/other", "events": ["jobs.completed"]},
        201,
    ),
    "endpoint-patch": ("patch", "/api/v1/webhook-endpoints/{endpoint}/", {"is_active": True}, 200),
    "endpoint-rotate": ("post", "/api/v1/webhook-endpoints/{endpoint}/rotate-secret/", None, 200),
    "endpoint-redeliver-failed": (
        "post",
        "/api/v1/webhook-endpoints/{endpoint}/redeliver-failed/",
        {"since": "2000-01-01T00:00:00Z"},
        202,
    ),
    "delivery-redeliver": ("post", "/api/v1/webhook-deliveries/{delivery}/redeliver/", None, 202),
    "endpoint-delete": ("delete", "/api/v1/webhook-endpoints/{endpoint}/", None, 204),
}


@pytest.mark.parametrize("idempotency_key", [False, True], ids=["plain", "idempotency-key"])
@pytest.mark.parametrize("name", list(WRITES))
def test_a_write_answers_from_its_transaction_nothing_runs_after_the_commit(
    write_data: dict[str, Any], name: str, idempotency_key: bool
) -> None:
    method, path, body, status = WRITES[name]
    ids = {key: str(write_data[key].pk) for key in ("job", "endpoint", "delivery")}
    url, data = fill(path, ids), fill(body, ids)
    extra = {"HTTP_IDEMPOTENCY_KEY": f"write-{name}"} if idempotency_key else {}

    with CaptureQueriesContext(connection) as queries:
        response = getattr(write_data["client"], method)(url, data, format="json", **extra)

    assert response.status_code == status, response.content[:500]
    assert _after_last_commit(queries.captured_queries) == []
    if idempotency_key and method == "post":
        stored = IdempotencyKey.objects.get(key=f"write-{name}")
        assert stored.response_status == status


def test_a_replay_after_the_commit_answers_the_stored_job(write_data: dict[str, Any]) -> None:
    client = write_data["client"]
    body = {"type": "export", "code": "ONCE-1"}
    first = client.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="once")
    again = client.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="once")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Job.objects.filter(code="ONCE-1").count() == 1
    assert Job.objects.get(code="ONCE-1").status == JobStatus.PENDING


@pytest.mark.parametrize("host", ["bad host", "evil.example"])
def test_a_host_this_server_does_not_answer_for_is_a_problem_document_under_the_api(
    api: APIClient, host: str, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "testserver"]

    response = api.get("/api/v1/jobs/", HTTP_HOST=host)

    problem = assert_problem(response, 400, "bad_request")
    assert "Host" in problem["detail"]
    assert Client().get("/admin/login/", HTTP_HOST=host).status_code == 400  # Django's page
