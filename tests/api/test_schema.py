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
