"""The OpenAPI document, the browsable docs and /healthz, as a client sees them."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from config.celery_app import app as celery_app

pytestmark = pytest.mark.django_db

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}

# Every path of DESIGN §3 implemented so far, with the methods it answers.
DESIGN_PATHS = {
    "/api/v1/auth/token/": {"post"},
    "/api/v1/auth/token/refresh/": {"post"},
    "/api/v1/jobs/": {"get", "post"},
    "/api/v1/jobs/{job_id}/": {"get", "patch"},
    "/api/v1/jobs/{job_id}/events/": {"get", "post"},
    "/api/v1/jobs/{job_id}/cancel/": {"post"},
    "/api/v1/jobs/{job_id}/push-results/": {"get", "post"},
    "/api/v1/export-job-events/": {"post"},
    "/services/rest/v1/export/job/status": {"post"},
    "/engine/api/api-jobs/{job_id}": {"get"},
}


@pytest.fixture
def schema(db: None) -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _has_examples(content: dict[str, Any] | None) -> bool:
    return any(media.get("examples") or "example" in media for media in (content or {}).values())


def test_schema_is_a_valid_openapi_document(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    validate(schema)


def test_schema_is_served_without_a_token() -> None:
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    assert "json" in response["Content-Type"]


@pytest.mark.parametrize(("path", "methods"), sorted(DESIGN_PATHS.items()))
def test_every_design_path_is_documented(
    schema: dict[str, Any], path: str, methods: set[str]
) -> None:
    assert path in schema["paths"], sorted(schema["paths"])
    assert methods <= set(schema["paths"][path])


# Issue 12: push correlations on jobs and the per-company push ingest URL.
INGEST_PATHS = {
    "/api/v1/jobs/{job_id}/push-correlations/": {"get", "post"},
    "/api/v1/push-ingest/": {"get"},
    "/api/v1/push-ingest/rotate-secret/": {"post"},
    "/api/v1/push-ingest/{company_id}/": {"post"},
}


@pytest.mark.parametrize(("path", "methods"), sorted(INGEST_PATHS.items()))
def test_the_ingest_paths_are_documented(
    schema: dict[str, Any], path: str, methods: set[str]
) -> None:
    assert methods <= set(schema["paths"][path])


def test_the_ingest_url_takes_a_signature_not_a_token(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/v1/push-ingest/{company_id}/"]["post"]
    assert not operation.get("security")
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"Railz-Signature"}
    assert {"200", "201", "202", "400", "401"} <= set(operation["responses"])
    assert schema["paths"]["/api/v1/jobs/"]["get"]["security"]  # the others take a token


def test_endpoints_document_their_role(schema: dict[str, Any]) -> None:
    endpoint = schema["components"]["schemas"]["Endpoint"]["properties"]
    assert "role" in endpoint
    request = schema["components"]["schemas"]["EndpointInput"]
    assert "role" in request["properties"] and "events" not in request.get("required", [])


def test_every_operation_documents_a_client_error(schema: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in _operations(schema)
        if not any(code.startswith("4") for code in operation["responses"])
    ]
    assert missing == []


def test_client_errors_are_documented_as_problem_documents(schema: dict[str, Any]) -> None:
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "errors" in problem["properties"]
    for path, method, operation in _operations(schema):
        for code, response in operation["responses"].items():
            if code.startswith("4"):
                assert response.get("content"), f"{method.upper()} {path} {code} has no body"


def test_every_operation_with_a_body_shows_an_example(schema: dict[str, Any]) -> None:
    """A request example, or an example of the successful answer; error examples don't count."""
    missing = []
    for path, method, operation in _operations(schema):
        body = operation.get("requestBody")
        if not body:
            continue
        success_examples = any(
            _has_examples(response.get("content"))
            for code, response in operation["responses"].items()
            if code.startswith("2")
        )
        if not (_has_examples(body.get("content")) or success_examples):
            missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_docs_page_is_html_with_its_script_served_apart() -> None:
    """The page has no inline script or style (the Content-Security-Policy allows neither):
    its initialising script, which names the schema, is a request of its own."""
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"<script>" not in response.content and b"<style" not in response.content
    assert b'<script src="/api/docs/?script="></script>' in response.content
    script = APIClient().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"/api/schema/" in script.content


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_reports_database_and_broker_ok() -> None:
    response = APIClient().get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_healthz_answers_503_naming_the_broker_when_it_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = APIClient().get("/healthz")
    finally:
        celery_app.conf.broker_url = previous

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "broker": "error"}  # no exception text


def test_healthz_is_back_to_200_once_the_broker_is_restored() -> None:
    assert APIClient().get("/healthz").status_code == 200


# --- issue 14: the document says what the server sends -----------------------------------------

PAGINATED_LISTS = {
    "/api/v1/jobs/": "Job",
    "/api/v1/jobs/{job_id}/events/": "JobEvent",
    "/api/v1/jobs/{job_id}/push-results/": "PushResult",
    "/api/v1/webhook-endpoints/": "Endpoint",
    "/api/v1/webhook-deliveries/": "Delivery",
}


def _component(schema: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


@pytest.mark.parametrize(("path", "item"), sorted(PAGINATED_LISTS.items()))
def test_list_operations_are_documented_as_the_pages_they_send(
    schema: dict[str, Any], api: APIClient, path: str, item: str
) -> None:
    operation = schema["paths"][path]["get"]
    assert operation["operationId"].endswith("_list")
    page = _component(
        schema, operation["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert page["type"] == "object"
    assert set(page["required"]) == set(page["properties"]) == {"next", "previous", "results"}
    assert page["properties"]["next"]["nullable"] and page["properties"]["previous"]["nullable"]
    results = page["properties"]["results"]
    assert results["type"] == "array"
    assert results["items"]["$ref"] == f"#/components/schemas/{item}"
    if "{" not in path:  # what the server sends has exactly those keys
        assert set(api.get(path).json()) == {"next", "previous", "results"}


def test_error_answers_are_documented_as_problem_json(schema: dict[str, Any]) -> None:
    wrong = []
    for path, method, operation in _operations(schema):
        for code, response in operation["responses"].items():
            content = response.get("content") or {}
            if code[0] in "45" and set(content) != {"application/problem+json"}:
                wrong.append(f"{method.upper()} {path} {code}: {sorted(content)}")
            if code[0] in "45":
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
    assert wrong == []


def test_an_error_answer_has_the_content_type_the_document_declares(api: APIClient) -> None:
    response = api.get("/api/v1/jobs/", {"status": "bogus"})

    assert response.status_code == 400
    assert response["Content-Type"].split(";")[0] == "application/problem+json"


def test_every_operation_declares_the_statuses_answered_outside_its_view(
    schema: dict[str, Any],
) -> None:
    for path, method, operation in _operations(schema):
        responses = operation["responses"]
        name = f"{method.upper()} {path}"
        assert {"400", "406", "411", "413", "415", "503"} <= set(responses), name
        assert "Retry-After" in responses["503"]["headers"], name
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"], name
        if path.endswith("/"):
            assert "Location" in responses["308"]["headers"], name
        else:
            assert "308" not in responses, name


def test_idempotent_operations_declare_the_replay_header(schema: dict[str, Any]) -> None:
    keyed = {
        f"{method.upper()} {path}": operation
        for path, method, operation in _operations(schema)
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    # every @idempotent handler takes the header (jobs, events, cancel, push results,
    # webhook endpoints and deliveries, seed 000's events, push correlations)
    assert {
        "POST /api/v1/jobs/",
        "POST /api/v1/jobs/{job_id}/events/",
        "POST /api/v1/jobs/{job_id}/cancel/",
        "POST /api/v1/jobs/{job_id}/push-results/",
        "POST /api/v1/webhook-endpoints/",
        "POST /api/v1/export-job-events/",
    } <= set(keyed)
    for name, operation in keyed.items():
        for code, response in operation["responses"].items():
            if code[0] == "2":
                assert "Idempotent-Replayed" in response["headers"], (name, code)


def test_response_headers_are_documented(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    created = paths["/api/v1/jobs/"]["post"]["responses"]["201"]["headers"]
    assert {"Location", "Retry-After", "Idempotent-Replayed"} <= set(created)
    assert "Location" in paths["/api/v1/webhook-endpoints/"]["post"]["responses"]["201"]["headers"]
    for path, method in [
        ("/api/v1/jobs/{job_id}/", "get"),
        ("/api/v1/jobs/{job_id}/", "patch"),
        ("/api/v1/jobs/{job_id}/cancel/", "post"),
        ("/engine/api/api-jobs/{job_id}", "get"),
        ("/services/rest/v1/export/job/status", "post"),
    ]:
        assert "Retry-After" in paths[path][method]["responses"]["200"]["headers"], path


def test_token_expired_is_documented(schema: dict[str, Any]) -> None:
    examples = schema["paths"]["/api/v1/jobs/"]["get"]["responses"]["401"]["content"][
        "application/problem+json"
    ]["examples"]
    assert {e["value"]["code"] for e in examples.values()} >= {"invalid_token", "token_expired"}
