"""Bad input of any kind: a 4xx problem document with a clear message, never a 500, no change.

The client here does not re-raise server exceptions, so a crash shows up as the 500 a real client
would get (and fails the status assertion) instead of as a traceback.
"""

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from jobs.models import Company, Job, JobEvent, JobStatus, PushResult
from tests.factories import CompanyFactory, JobFactory

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/v1/jobs/"
PROBLEM = "application/problem+json"
INT_MAX = 2_147_483_647
MIB = 1024 * 1024
METADATA_MAX = 16 * 1024


@pytest.fixture
def api(api: APIClient) -> APIClient:
    api.raise_request_exception = False
    return api


@pytest.fixture
def job(company: Company) -> Job:
    return JobFactory(company=company, total_records=10)


def snapshot() -> tuple[Any, ...]:
    """Everything a bad request must leave alone."""
    return (
        Job.objects.count(),
        JobEvent.objects.count(),
        PushResult.objects.count(),
        list(
            Job.objects.order_by("id").values_list(
                "id",
                "code",
                "status",
                "total_records",
                "effected_records",
                "message",
                "metadata",
                "updated_at",
            )
        ),
    )


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content[:800]
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["title"], str) and body["title"]
    if code is not None:
        assert body["code"] == code, body
    if "errors" in body:
        assert body["errors"], body
        for item in body["errors"]:
            assert set(item) == {"field", "message"}, item
            assert isinstance(item["message"], str) and item["message"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    return {item["field"] for item in body.get("errors", [])}


# The three write endpoints that take a job body: (method, url for a job).
TARGETS: dict[str, tuple[str, Callable[[Job], str]]] = {
    "create": ("post", lambda job: JOBS_URL),
    "patch": ("patch", lambda job: f"{JOBS_URL}{job.pk}/"),
    "event": ("post", lambda job: f"{JOBS_URL}{job.pk}/events/"),
}


def send(
    client: APIClient,
    target: str,
    job: Job,
    body: Any,
    *,
    raw: bool = False,
    content_type: str = "application/json",
    **extra: Any,
) -> Any:
    method, url = TARGETS[target]
    data = body if raw else json.dumps(body)
    return getattr(client, method)(url(job), data, content_type=content_type, **extra)


def assert_refused(
    client: APIClient,
    target: str,
    job: Job,
    body: Any,
    *,
    status: int = 400,
    code: str | None = None,
    field: str | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    before = snapshot()
    response = send(client, target, job, body, raw=raw)
    problem = assert_problem(response, status, code)
    if field is not None:
        assert field in error_fields(problem), problem
        assert field in problem["detail"] or len(problem["errors"]) > 1, problem
    assert snapshot() == before
    return problem


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    "raw",
    [
        '{"type": ',
        "{'type': 'export'}",
        '{"type": "export",}',
        '{"type": "export"} trailing',
        "{type: export}",
        '{"total_records": NaN}',
        '{"total_records": Infinity}',
        "undefined",
        # a repeated member name: the last one silently won (RFC 8259: unpredictable)
        '{"type": "export", "type": "import"}',
        '{"status": "completed", "status": "failed", "failure_reason": "service_timeout"}',
        '{"metadata": {"a": 1, "a": 2}}',
    ],
)
def test_malformed_json_is_400(api: APIClient, job: Job, target: str, raw: str) -> None:
    problem = assert_refused(api, target, job, raw, raw=True, code="malformed_json")
    assert problem["type"] == "/problems/malformed_json"


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("raw", ["[]", '[{"type": "export"}]', '"export"', "null", "5", "true"])
def test_body_that_is_not_an_object_is_400(api: APIClient, job: Job, target: str, raw: str) -> None:
    problem = assert_refused(api, target, job, raw, raw=True, code="validation_error")
    assert error_fields(problem) == {""}


# --- wrong types ------------------------------------------------------------------------------

WRONG_TYPES = [
    ("create", {"type": 5}, "type"),
    ("create", {"type": None}, "type"),
    ("create", {"type": ["export"]}, "type"),
    ("create", {"type": {"name": "export"}}, "type"),
    ("create", {"type": "export", "code": 5}, "code"),
    ("create", {"type": "export", "total_records": "5"}, "total_records"),
    ("create", {"type": "export", "total_records": True}, "total_records"),
    ("create", {"type": "export", "total_records": 1.5}, "total_records"),
    ("create", {"type": "export", "total_records": [5]}, "total_records"),
    ("create", {"type": "export", "expires_after": "60"}, "expires_after"),
    ("create", {"type": "export", "expires_after": True}, "expires_after"),
    ("create", {"type": "export", "metadata": []}, "metadata"),
    ("create", {"type": "export", "metadata": "x"}, "metadata"),
    ("create", {"type": "export", "metadata": 5}, "metadata"),
    ("create", {"type": "export", "metadata": None}, "metadata"),
    ("patch", {"total_records": "5"}, "total_records"),
    ("patch", {"total_records": True}, "total_records"),
    ("patch", {"total_records": 1.5}, "total_records"),
    ("patch", {"effected_records": "5"}, "effected_records"),
    ("patch", {"effected_records": False}, "effected_records"),
    ("patch", {"effected_records": 2.5}, "effected_records"),
    ("patch", {"message": 5}, "message"),
    ("patch", {"message": ["x"]}, "message"),
    ("patch", {"metadata": []}, "metadata"),
    ("patch", {"metadata": "x"}, "metadata"),
    ("event", {"status": 5}, "status"),
    ("event", {"status": None}, "status"),
    ("event", {"status": ["started"]}, "status"),
    ("event", {"status": "started", "total_records": "5"}, "total_records"),
    ("event", {"status": "started", "total_records": True}, "total_records"),
    ("event", {"status": "started", "total_records": 1.5}, "total_records"),
    ("event", {"status": "started", "effected_records": "5"}, "effected_records"),
    ("event", {"status": "started", "message": 5}, "message"),
    ("event", {"status": "failed", "failure_reason": 5}, "failure_reason"),
]


@pytest.mark.parametrize(("target", "body", "field"), WRONG_TYPES)
def test_wrong_types_are_400_naming_the_field(
    api: APIClient, job: Job, target: str, body: dict[str, Any], field: str
) -> None:
    assert_refused(api, target, job, body, code="validation_error", field=field)


@pytest.mark.parametrize(
    ("target", "body", "field"),
    [("create", {}, "type"), ("create", {"code": "X-1"}, "type"), ("event", {}, "status")],
)
def test_missing_required_field_is_400(
    api: APIClient, job: Job, target: str, body: dict[str, Any], field: str
) -> None:
    assert_refused(api, target, job, body, code="validation_error", field=field)


def test_empty_patch_is_400(api: APIClient, job: Job) -> None:
    problem = assert_refused(api, "patch", job, {}, code="validation_error")
    assert "at least one" in problem["detail"]


@pytest.mark.parametrize(
    ("target", "body", "field"),
    [
        ("create", {"type": "export", "colour": "red"}, "colour"),
        ("create", {"type": "export", "total_record": 5}, "total_record"),
        ("create", {"type": "export", "status": "completed"}, "status"),
        ("create", {"type": "export", "company_id": "x"}, "company_id"),
        ("patch", {"colour": "red"}, "colour"),
        ("patch", {"message": "ok", "code": "NEW"}, "code"),
        ("event", {"status": "started", "colour": "red"}, "colour"),
        ("event", {"status": "started", "metadata": {}}, "metadata"),
    ],
)
def test_unknown_field_is_400_naming_it(
    api: APIClient, job: Job, target: str, body: dict[str, Any], field: str
) -> None:
    problem = assert_refused(api, target, job, body, code="validation_error", field=field)
    assert "Unknown field" in problem["detail"]


# --- values out of range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["ex port", "exp/ort", "export!", "ëxport", "", " ", "a" * 65, "ex\nport"]
)
def test_type_must_be_a_slug_of_at_most_64_chars(api: APIClient, job: Job, value: str) -> None:
    assert_refused(api, "create", job, {"type": value}, code="validation_error", field="type")


@pytest.mark.parametrize("value", ["EX PORT-1", "a" * 65, "a/b", "", "ä"])
def test_code_must_be_plain_and_at_most_64_chars(api: APIClient, job: Job, value: str) -> None:
    body = {"type": "export", "code": value}
    assert_refused(api, "create", job, body, code="validation_error", field="code")


def test_longest_type_and_code_are_accepted(api: APIClient) -> None:
    response = api.post(JOBS_URL, {"type": "t" * 64, "code": "C" * 64}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["code"] == "C" * 64


@pytest.mark.parametrize("value", [-1, INT_MAX + 1, 10**30])
@pytest.mark.parametrize(
    ("target", "field", "base"),
    [
        ("create", "total_records", {"type": "export"}),
        ("patch", "total_records", {}),
        ("patch", "effected_records", {}),
        ("event", "total_records", {"status": "started"}),
        ("event", "effected_records", {"status": "started"}),
    ],
)
def test_counts_must_be_between_0_and_int_max(
    api: APIClient, job: Job, target: str, field: str, base: dict[str, Any], value: int
) -> None:
    body = {**base, field: value}
    assert_refused(api, target, job, body, code="validation_error", field=field)


def test_count_at_int_max_is_accepted(api: APIClient) -> None:
    response = api.post(JOBS_URL, {"type": "export", "total_records": INT_MAX}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["total_records"] == INT_MAX


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("patch", {"total_records": 5, "effected_records": 6}),
        ("patch", {"effected_records": 11}),  # the job's total_records is 10
        ("patch", {"total_records": 3}),  # below the effected_records set below
        ("event", {"status": "started", "total_records": 5, "effected_records": 6}),
        ("event", {"status": "completed", "effected_records": 11}),
    ],
)
def test_effected_records_above_total_records_is_400(
    api: APIClient, job: Job, target: str, body: dict[str, Any]
) -> None:
    progress = api.patch(f"{JOBS_URL}{job.pk}/", {"effected_records": 4}, format="json")
    assert progress.status_code == 200, progress.content
    problem = assert_refused(api, target, job, body, code="invalid_counts")
    assert error_fields(problem) == {"effected_records"}


def test_metadata_over_16_kib_is_400(api: APIClient, job: Job) -> None:
    metadata = {"x": "a" * METADATA_MAX}

    assert_refused(api, "create", job, {"type": "export", "metadata": metadata}, field="metadata")
    assert_refused(api, "patch", job, {"metadata": metadata}, field="metadata")


def test_metadata_of_exactly_16_kib_is_accepted(api: APIClient) -> None:
    metadata = {"x": "a" * (METADATA_MAX - len('{"x":""}'))}
    assert len(json.dumps(metadata, separators=(",", ":"))) == METADATA_MAX

    response = api.post(JOBS_URL, {"type": "export", "metadata": metadata}, format="json")

    assert response.status_code == 201, response.content[:300]


@pytest.mark.parametrize("value", [0, -1, -(2**40), INT_MAX + 1])
def test_expires_after_out_of_range_is_400(api: APIClient, job: Job, value: int) -> None:
    body = {"type": "export", "expires_after": value}
    assert_refused(api, "create", job, body, code="validation_error", field="expires_after")


def test_message_over_10000_chars_is_400(api: APIClient, job: Job) -> None:
    assert_refused(api, "patch", job, {"message": "m" * 10_001}, field="message")
    assert_refused(api, "event", job, {"status": "started", "message": "m" * 10_001})


@pytest.mark.parametrize(
    "value", ["bogus", "created", "progress", "STARTED", "pending", "processing", ""]
)
def test_unknown_event_status_is_400_listing_the_allowed_ones(
    api: APIClient, job: Job, value: str
) -> None:
    problem = assert_refused(api, "event", job, {"status": value}, field="status")
    for allowed in ("started", "completed", "completed_with_errors", "failed"):
        assert allowed in problem["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "failed"}, "failure_reason"),
        ({"status": "failed", "failure_reason": "bogus"}, "failure_reason"),
        ({"status": "failed", "failure_reason": ""}, "failure_reason"),
        ({"status": "completed", "failure_reason": "service_timeout"}, "failure_reason"),
    ],
)
def test_failure_reason_rules_are_400(
    api: APIClient, job: Job, body: dict[str, Any], field: str
) -> None:
    assert_refused(api, "event", job, body, field=field)


@pytest.mark.parametrize("value", ["completed", "failed", "processing", None])
def test_patching_status_is_400(api: APIClient, job: Job, value: Any) -> None:
    problem = assert_refused(api, "patch", job, {"status": value}, field="status")
    assert "events" in problem["detail"]


def test_patching_status_with_other_fields_changes_nothing(api: APIClient, job: Job) -> None:
    body = {"status": "completed", "message": "done", "effected_records": 10}
    assert_refused(api, "patch", job, body, field="status")
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


# --- input that parses as JSON but cannot be stored or echoed back ---------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "raw"),
    [
        ("post", "", '{"type": "export", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("patch", "{id}/", '{"metadata": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001),
        ("post", "{id}/events/", "[" * 100_000 + "]" * 100_000),
    ],
    ids=["create", "patch", "event"],
)
def test_deeply_nested_json_is_400(
    api: APIClient, job: Job, method: str, suffix: str, raw: str
) -> None:
    before = snapshot()
    response = getattr(api, method)(
        JOBS_URL + suffix.format(id=job.pk), raw, content_type="application/json"
    )

    # past Python's recursion limit: the same answer as 65 levels the parser took
    assert "nested more than 64 levels deep" in assert_problem(response, 400)["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("levels", [65, 885])
def test_json_nested_deeper_than_the_limit_is_400_even_within_pythons_reach(
    api: APIClient, job: Job, levels: int
) -> None:
    """885 levels parse, but encoding them again (response, database, webhook) runs deeper in
    the stack: taken, such a job failed every later read or completion."""
    before = snapshot()
    metadata = '{"a": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
    body = '{"type": "export", "metadata": ' + metadata + "}"

    response = api.post(JOBS_URL, body, content_type="application/json")

    assert "64 levels" in assert_problem(response, 400)["detail"]
    assert snapshot() == before


def test_json_nested_up_to_the_limit_is_taken_and_read_back(api: APIClient) -> None:
    metadata = json.loads('{"a": ' + "[" * 62 + "]" * 62 + "}")  # 64 levels with the body

    created = api.post(JOBS_URL, {"type": "export", "metadata": metadata}, format="json")

    assert created.status_code == 201, created.content
    assert api.get(f"{JOBS_URL}{created.json()['id']}/").json()["metadata"] == metadata


@pytest.mark.parametrize(
    ("method", "suffix", "raw"),
    [
        ("post", "", '{"type": "export", "metadata": {"big": 1e400}}'),
        ("patch", "{id}/", '{"metadata": {"small": -1e999}}'),
        (
            "post",
            "{id}/push-results/",
            '{"data": {"pushCommunicationId": "p", "status": "success",'
            ' "serviceAccountRef": {"n": 1e400}}}',
        ),
    ],
    ids=["create", "patch", "push-result"],
)
def test_number_too_large_for_json_storage_is_400(
    api: APIClient, job: Job, method: str, suffix: str, raw: str
) -> None:
    """1e400 parses as float('inf'), which no JSON column (nor JSON answer) can hold."""
    before = snapshot()
    response = getattr(api, method)(
        JOBS_URL + suffix.format(id=job.pk), raw, content_type="application/json"
    )

    assert_problem(response, 400)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "suffix", "raw", "field"),
    [
        ("post", "", '{"type": "export", "metadata": {"x": "\\ud800"}}', "metadata"),
        ("patch", "{id}/", '{"metadata": {"\\udfff": 1}}', "metadata"),
        ("patch", "{id}/", '{"\\ud83d": 1}', None),
        ("post", "{id}/events/", '{"status": "\\udfff"}', "status"),
        ("post", "{id}/events/", '{"status": "failed", "failure_reason": "\\ud800"}', None),
        (
            "post",
            "{id}/push-results/",
            '{"data": {"pushCommunicationId": "p", "status": "success",'
            ' "serviceAccountRef": {"id": "\\ud800"}}}',
            None,
        ),
    ],
    ids=["create-metadata", "patch-metadata-key", "field-name", "status", "reason", "push"],
)
def test_lone_surrogate_is_400_and_changes_nothing(
    api: APIClient, job: Job, method: str, suffix: str, raw: str, field: str | None
) -> None:
    """A JSON string may spell an unpaired UTF-16 surrogate; it is not valid Unicode text."""
    before = snapshot()
    response = getattr(api, method)(
        JOBS_URL + suffix.format(id=job.pk), raw, content_type="application/json"
    )

    problem = assert_problem(response, 400)
    if field is not None:
        assert field in error_fields(problem) or problem["code"] == "malformed_json"
    assert snapshot() == before
    # the job is still readable afterwards
    assert api.get(f"{JOBS_URL}{job.pk}/").status_code == 200


# --- transport-level problems -----------------------------------------------------------------


def big_body(target: str) -> str:
    filler = "a" * int(1.1 * MIB)
    body = {
        "create": {"type": "export", "metadata": {"x": filler}},
        "patch": {"metadata": {"x": filler}},
        "event": {"status": "started", "message": filler},
    }[target]
    return json.dumps(body)


@pytest.mark.parametrize("target", list(TARGETS))
def test_body_over_1_mib_is_413(api: APIClient, job: Job, target: str) -> None:
    raw = big_body(target)
    assert len(raw.encode()) > 1.1 * MIB

    assert_refused(api, target, job, raw, raw=True, status=413, code="body_too_large")


def test_body_over_1_mib_is_413_even_without_a_token(job: Job) -> None:
    before = snapshot()
    response = APIClient().post(JOBS_URL, big_body("create"), content_type="application/json")

    assert_problem(response, 413, "body_too_large")
    assert snapshot() == before


def test_non_numeric_content_length_is_400(api: APIClient, job: Job) -> None:
    before = snapshot()
    response = send(api, "create", job, {"type": "export"}, CONTENT_LENGTH="lots")

    assert_problem(response, 400, "invalid_content_length")
    assert snapshot() == before


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/x-www-form-urlencoded", "type=export&status=started&message=x"),
        (
            "multipart/form-data; boundary=XyZ",
            '--XyZ\r\nContent-Disposition: form-data; name="type"\r\n\r\nexport\r\n--XyZ--\r\n',
        ),
        ("text/plain", '{"type": "export", "status": "started"}'),
        ("application/xml", "<job><type>export</type></job>"),
    ],
)
def test_non_json_body_is_415(
    api: APIClient, job: Job, target: str, content_type: str, raw: str
) -> None:
    before = snapshot()
    response = send(api, target, job, raw, raw=True, content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", ""),
        ("put", ""),
        ("patch", ""),
        ("delete", "{id}/"),
        ("put", "{id}/"),
        ("post", "{id}/"),
        ("get", "{id}/cancel/"),
        ("delete", "{id}/events/"),
    ],
)
def test_wrong_method_is_405(api: APIClient, job: Job, method: str, path: str) -> None:
    before = snapshot()
    url = JOBS_URL + path.format(id=job.pk)
    if method == "get":
        response = api.get(url)
    else:
        response = getattr(api, method)(url, "{}", content_type="application/json")

    assert_problem(response, 405, "method_not_allowed")
    assert method.upper() not in response["Allow"].split(", ")
    assert snapshot() == before


def test_wrong_method_on_export_job_events_is_405(api: APIClient) -> None:
    response = api.delete("/api/v1/export-job-events/")

    assert_problem(response, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope/",
        "/api/v1/jobs/{id}/nope/",
        "/api/v1/job/",
        "/api/v2/jobs/",
        "/api/v1/jobs/{id}/events/1/",
    ],
)
@pytest.mark.parametrize("authenticated", [True, False])
def test_unknown_url_is_404_problem(
    api: APIClient, job: Job, path: str, authenticated: bool
) -> None:
    client = api if authenticated else APIClient()

    response = client.get(path.format(id=job.pk))

    problem = assert_problem(response, 404, "not_found")
    assert problem["type"] == "/problems/not_found"


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "0" * 32 + "g", "%27%20OR%201=1--"])
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "/", None),
        ("patch", "/", {"message": "x"}),
        ("post", "/events/", {"status": "started"}),
        ("post", "/cancel/", {}),
        ("get", "/events/", None),
    ],
)
def test_non_uuid_job_id_is_404(
    api: APIClient, job: Job, job_id: str, method: str, suffix: str, body: Any
) -> None:
    before = snapshot()
    response = getattr(api, method)(f"{JOBS_URL}{job_id}{suffix}", body, format="json")

    assert_problem(response, 404, "not_found")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "/", None),
        ("patch", "/", {"message": "x"}),
        ("post", "/events/", {"status": "started"}),
        ("post", "/cancel/", {}),
    ],
)
def test_unknown_or_foreign_job_is_404(
    api: APIClient, job: Job, method: str, suffix: str, body: Any
) -> None:
    foreign = JobFactory(company=CompanyFactory(name="Someone else"))
    before = snapshot()
    for job_id in ("00000000-0000-0000-0000-000000000000", foreign.pk):
        response = getattr(api, method)(f"{JOBS_URL}{job_id}{suffix}", body, format="json")
        assert_problem(response, 404, "not_found")
    assert snapshot() == before


# --- list parameters --------------------------------------------------------------------------


# the lists whose cursor holds a time (created_at; a job's push results: received_at)
TIME_CURSOR_PATHS = [
    JOBS_URL,
    JOBS_URL + "{job}/push-results/",
    "/api/v1/webhook-endpoints/",
    "/api/v1/webhook-deliveries/",
]


def _cursor(querystring: str) -> str:
    return base64.b64encode(querystring.encode()).decode()


@pytest.mark.parametrize("cursor", ["garbage", "////", _cursor("o=many"), _cursor("r=x&o=-")])
def test_invalid_cursor_is_400(api: APIClient, job: Job, cursor: str) -> None:
    response = api.get(JOBS_URL, {"cursor": cursor})

    problem = assert_problem(response, 400, "validation_error")
    assert error_fields(problem) == {"cursor"}


@pytest.mark.parametrize(
    ("suffix", "querystring"),
    [
        ("", "p=notadate"),
        ("", "o=1&r=1&p=2024-13-45"),
        ("{id}/events/", "p=not-a-number"),
    ],
)
def test_tampered_cursor_position_is_400(
    api: APIClient, job: Job, suffix: str, querystring: str
) -> None:
    """A cursor that decodes but whose position is not a value of the ordering field."""
    response = api.get(JOBS_URL + suffix.format(id=job.pk), {"cursor": _cursor(querystring)})

    problem = assert_problem(response, 400, "validation_error")
    assert error_fields(problem) == {"cursor"}


@pytest.mark.parametrize("path", TIME_CURSOR_PATHS)
@pytest.mark.parametrize(
    "querystring",
    [
        "p=9999-12-31T23:59:59-15:00",  # past the last instant a datetime holds, in UTC
        "p=2026-01-01T00:00:00%2B25:00",
        "p=0001-01-01T00:00:00%2B01:00",  # before the first instant a datetime holds, in UTC
    ],
)
def test_cursor_time_position_python_cannot_hold_in_utc_is_400(
    api: APIClient, job: Job, path: str, querystring: str
) -> None:
    response = api.get(path.format(job=job.pk), {"cursor": _cursor(querystring)})

    problem = assert_problem(response, 400, "validation_error")
    assert error_fields(problem) == {"cursor"}


@pytest.mark.parametrize("path", TIME_CURSOR_PATHS)
@pytest.mark.parametrize("offset", ["+16:00", "+23:59", "-16:00", ""])
def test_cursor_time_position_is_read_in_utc_whatever_its_offset(
    api: APIClient, company: Company, path: str, offset: str
) -> None:
    """An offset Python takes but PostgreSQL refuses (beyond ±15:59) failed the query (500):
    the cursor's instant is read in UTC, so it pages from that instant; without an offset it
    is UTC."""
    job = JobFactory(company=company)
    position = "3000-01-01T16:00:00" + offset  # after everything: a cursor paging backward
    response = api.get(path.format(job=job.pk), {"cursor": _cursor(urlencode({"p": position}))})

    assert response.status_code == 200, response.content
    if path == JOBS_URL:
        assert len(response.json()["results"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": "started"}, "status"),
        ({"created_after": "notadate"}, "created_after"),
        ({"created_before": "2024-13-45"}, "created_before"),
        ({"type": "not a slug"}, "type"),
        ({"code": "a b"}, "code"),
    ],
)
def test_invalid_list_filter_is_400(
    api: APIClient, job: Job, params: dict[str, str], field: str
) -> None:
    response = api.get(JOBS_URL, params)

    problem = assert_problem(response, 400, "validation_error")
    assert field in error_fields(problem)
    assert field in problem["detail"]


def test_valid_list_filters_still_work(api: APIClient, job: Job) -> None:
    response = api.get(JOBS_URL, {"status": "pending", "created_after": "2000-01-01T00:00:00Z"})

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [str(job.pk)]


# --- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["[]", "false", "0", '""', "null", '"please"', "[1]"])
def test_cancel_with_a_body_that_is_not_an_object_is_400(
    api: APIClient, job: Job, raw: str
) -> None:
    before = snapshot()
    response = api.post(f"{JOBS_URL}{job.pk}/cancel/", raw, content_type="application/json")

    assert_problem(response, 400, "validation_error")
    assert snapshot() == before
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_cancel_with_an_unknown_field_is_400(api: APIClient, job: Job) -> None:
    before = snapshot()
    response = api.post(f"{JOBS_URL}{job.pk}/cancel/", {"reason": "x"}, format="json")

    problem = assert_problem(response, 400, "validation_error")
    assert error_fields(problem) == {"reason"}
    assert snapshot() == before


# --- fuzz: odd bodies never crash the server --------------------------------------------------

DEEP = 100_000
ODD_BODIES: dict[str, str | bytes] = {
    "empty-object": "{}",
    "nested-junk": '{"type": {"nested": {"deeper": [1, [2, {"x": null}]]}}, "status": {"a": []}}',
    "nested-metadata": '{"type": "export", "metadata": {"a": [[[[[[[[[[{}]]]]]]]]]]}}',
    "deep-arrays": "[" * DEEP + "]" * DEEP,
    "deep-objects": '{"type": "export", "metadata": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
    "depth-200-metadata": '{"type": "export", "metadata": '
    + '{"a": ' * 200
    + "1"
    + "}" * 200
    + "}",
    "overflowing-floats": '{"type": "export", "total_records": 1e400, "status": -1e400}',
    "huge-int-count": '{"type": "export", "total_records": 123456789012345678901234567890}',
    "tiny-floats": '{"type": "export", "expires_after": -1e308, "effected_records": 1e-400}',
    "metadata-inf": '{"type": "export", "metadata": {"big": 1e400}}',
    "patch-metadata-inf": '{"metadata": {"big": -1e400}}',
    "metadata-huge-int": '{"type": "export", "metadata": {"big": ' + "9" * 60 + "}}",
    "nan-count": '{"type": "export", "total_records": NaN}',
    "infinity-metadata": '{"type": "export", "metadata": {"x": -Infinity}}',
    "bare-nan": "NaN",
    "non-ascii": '{"type": "ëxport-日本語", "code": "コード", "status": "完了"}',
    "emoji-metadata": '{"type": "export", "metadata": {"emoji": "😀🚀", "rtl": "\\u202eabc"}}',
    "surrogate-metadata": '{"type": "export", "metadata": {"x": "\\ud800"}}',
    "surrogate-metadata-key": '{"metadata": {"\\udfff": "lone surrogate key"}}',
    "surrogate-field-name": '{"\\ud83d": 1}',
    "surrogate-status": '{"status": "\\udfff"}',
    "surrogate-event": '{"jobId": "JOB_ID", "event": "\\ud800"}',
    "surrogate-job-code": '{"jobCode": "\\ud800"}',
    "nul-chars": '{"type": "export", "metadata": {"k\\u0000": "v\\u0000"}, "message": "\\u0000"}',
    "duplicate-keys": '{"type": "export", "type": 5, "status": "started", "status": "failed"}',
    "empty-body": "",
    "whitespace-body": "   \n\t ",
    "invalid-utf8": b'\xff\xfe\x00{"type": "export"}',
    "utf8-bom": '\ufeff{"type": "export"}',
    "long-strings": '{"type": "' + "a" * 200_000 + '", "message": "' + "m" * 200_000 + '"}',
    "long-array": "[" + ",".join(["1"] * 50_000) + "]",
    "proto-pollution": '{"__proto__": {"admin": true}, "constructor": {"prototype": {}}}',
    "path-traversal": '{"type": "export", "code": "../../etc/passwd", "jobCode": "../../x"}',
    "push-surrogate-ref": '{"data": {"pushCommunicationId": "p1", "status": "success",'
    ' "serviceAccountRef": {"id": "\\ud800"}}}',
    "push-inf-ref": '{"data": {"pushCommunicationId": "p2", "status": "success",'
    ' "serviceAccountRef": {"n": 1e400}}}',
    "push-bad-types": '{"data": {"pushCommunicationId": "p3", "status": "failed",'
    ' "responseCode": 1e400, "requestedOn": "9999-99-99T99:99:99Z", "sourceObjectIds":'
    ' [1, null, {}], "validation": {"errors": [{"field": null, "message": ["x"]}]}},'
    ' "requestId": 5}',
    "seed000-bad-types": '{"jobId": "JOB_ID", "event": "failed", "failureReasonType": 5,'
    ' "failureReason": {"x": 1}}',
    "seed000-long-reason": '{"jobId": "JOB_ID", "event": "failed", "failureReason": "'
    + "x" * 20_000
    + '"}',
    "counts-over-int-max": '{"status": "completed", "total_records": 2147483648}',
    "true": "true",
    "minus-zero": "-0",
    "string": '"just a string"',
    "null": "null",
}

WRITE_ENDPOINTS: dict[str, tuple[str, str]] = {
    "jobs": ("post", JOBS_URL),
    "job-patch": ("patch", JOBS_URL + "{id}/"),
    "events": ("post", JOBS_URL + "{id}/events/"),
    "cancel": ("post", JOBS_URL + "{id}/cancel/"),
    "push-results": ("post", JOBS_URL + "{id}/push-results/"),
    "export-job-events": ("post", "/api/v1/export-job-events/"),
    "export-job-status": ("post", "/services/rest/v1/export/job/status"),
}
# Answers in the seed's own shape rather than a problem document (seed 002).
SEED_SHAPED = {"export-job-status"}


@pytest.mark.parametrize("endpoint", list(WRITE_ENDPOINTS))
@pytest.mark.parametrize("body", list(ODD_BODIES.values()), ids=list(ODD_BODIES))
def test_odd_bodies_never_give_a_server_error(
    api: APIClient, job: Job, endpoint: str, body: str | bytes
) -> None:
    method, url = WRITE_ENDPOINTS[endpoint]
    if isinstance(body, str):
        body = body.replace("JOB_ID", str(job.pk))
    before = snapshot()

    response = getattr(api, method)(
        url.format(id=job.pk),
        body,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=f"fuzz-{endpoint}",
    )

    assert response.status_code < 500, response.content[:500]
    if 400 <= response.status_code < 500:
        if endpoint not in SEED_SHAPED:
            assert_problem(response, response.status_code)
        assert snapshot() == before
