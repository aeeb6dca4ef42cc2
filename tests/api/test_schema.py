"""The OpenAPI document, the browsable docs and /healthz, as a client sees them."""

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
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


def test_healthz_stays_200_degraded_naming_the_broker_when_it_is_unreachable(
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

    # the web serves without the broker (the event log keeps the changes): a load balancer
    # must not take it out of rotation
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "broker": "error"}  # no exception text


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_healthz_answers_degraded_when_the_broker_accepts_connections_but_never_answers(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """A frozen broker (Redis stopped with SIGSTOP: the kernel still completes the TCP
    handshake) held the check on the transport's 10 s read timeouts, retried: no answer within
    any load balancer's check timeout, so every web host left rotation."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)  # never accepts, never answers
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"{scheme}://127.0.0.1:{frozen.getsockname()[1]}/"
    answers: list[Any] = []
    try:

        def ask() -> None:
            try:
                answers.append(APIClient().get("/healthz"))
            finally:
                connection.close()  # this thread's

        check = threading.Thread(target=ask)
        check.start()
        check.join(30)  # a bound on hanging, far above the check's own (about 2 s)
    finally:
        celery_app.conf.broker_url = previous
        frozen.close()

    assert len(answers) == 1, "the health check is still waiting for the broker"
    assert answers[0].status_code == 200
    assert answers[0].json() == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "error"},
    }


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
    # OpenAPI 3.1: a nullable value has "null" among its types
    for cursor in ("next", "previous"):
        assert "null" in page["properties"][cursor]["type"], page["properties"][cursor]
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
            if path == "/services/rest/v1/export/job/status" and code == "400":
                continue  # the seed's own error shape, documented as application/json
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


# --- the webhooks section (issue 14) ------------------------------------------------------------


def _webhook_payload_schema(document: dict[str, Any], events_id: str) -> dict[str, Any]:
    operation = document["webhooks"][events_id]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    # 2020-12 lets $ref sit beside other keywords: the refs resolve against this root
    return {**schema, "components": document["components"]}


def test_every_event_id_the_code_can_emit_has_a_webhook(schema: dict[str, Any]) -> None:
    from jobs.relay import KIND_WEBHOOKS, TIMELINE_WEBHOOKS
    from webhooks.events import EVENT_TYPES
    from webhooks.services import TEST_EVENT

    emitted = {*TIMELINE_WEBHOOKS.values(), *KIND_WEBHOOKS.values(), *EVENT_TYPES, TEST_EVENT}
    assert schema["openapi"].startswith("3.1")
    assert emitted <= set(schema["webhooks"])


def test_every_webhook_documents_the_standard_webhooks_headers(schema: dict[str, Any]) -> None:
    for events_id, item in schema["webhooks"].items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, events_id
        assert "verify" in operation["description"].lower()
        components = schema["components"]["schemas"]
        payload = components[_webhook_payload_schema(schema, events_id)["$ref"].rsplit("/", 1)[1]]
        envelope = components[payload["properties"]["event"]["$ref"].rsplit("/", 1)[1]]
        assert envelope["properties"]["events_id"]["const"] == events_id


def test_real_payloads_validate_against_their_webhook_schema(schema: dict[str, Any]) -> None:
    """Every event the code sends, produced by the code, against the document's schema."""
    from jsonschema import Draft202012Validator

    from jobs import services as jobs
    from reports import services as reports
    from tests.factories import CompanyFactory, JobFactory
    from tests.relay import run_relay
    from webhooks import services as webhooks
    from webhooks.models import WebhookDelivery

    company = CompanyFactory()
    endpoint = webhooks.endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
    job = JobFactory(company=company, total_records=3)
    jobs.job_start(job_id=job.pk)
    jobs.job_record_progress(job_id=job.pk, effected_records=1, message="1/3")
    jobs.push_result_record(
        job_id=job.pk,
        data=jobs.PushResultData(
            push_communication_id="p1",
            status="failed",
            response_code=400,
            validation_errors=[{"field": "currencyRef", "message": "Multi Currency"}],
            source_object_ids=["354"],
        ),
    )
    jobs.job_apply_event(job_id=job.pk, status="completed_with_errors", effected_records=2)
    run_relay()
    reports.report_build(job_id=job.pk)
    completed = JobFactory(company=company)
    jobs.job_complete(job_id=completed.pk)
    failed = JobFactory(company=company)
    jobs.job_apply_event(job_id=failed.pk, status="failed", failure_reason="service_timeout")
    webhooks.endpoint_send_test(endpoint=endpoint)
    run_relay()

    seen = set()
    for delivery in WebhookDelivery.objects.all():
        validator = Draft202012Validator(_webhook_payload_schema(schema, delivery.events_id))
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(delivery.payload)
        ]
        assert errors == [], (delivery.events_id, delivery.payload)
        seen.add(delivery.events_id)
    assert seen == set(schema["webhooks"])


def test_a_payload_that_breaks_its_schema_is_caught(schema: dict[str, Any]) -> None:
    """The schemas are strict enough to tell: the wrong event id or a missing job field fails."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_webhook_payload_schema(schema, "jobs.completed"))
    payload = {
        "event": {"dt": "2026-11-22T10:30:00Z", "events_id": "jobs.failed", "object_id": "x"},
        "data": {"id": "not all the fields"},
    }
    messages = " ".join(e.message for e in validator.iter_errors(payload))
    assert "'jobs.completed' was expected" in messages
    assert "'code' is a required property" in messages


# --- examples (issue 14) --------------------------------------------------------------------------


def _example_values(media: dict[str, Any]) -> list[Any]:
    values = [e["value"] for e in (media.get("examples") or {}).values() if "value" in e]
    if "example" in media:
        values.append(media["example"])
    return values


def test_every_operation_shows_a_request_and_an_answer_example(schema: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in _operations(schema):
        body = operation.get("requestBody")
        if body and not _has_examples(body.get("content")):
            missing.append(f"{method.upper()} {path}: request")
        for code, response in operation["responses"].items():
            content = {
                media_type: media
                for media_type, media in (response.get("content") or {}).items()
                if "json" in media_type
            }
            if code.startswith("2") and content and not _has_examples(content):
                missing.append(f"{method.upper()} {path}: {code}")
    assert missing == []


def test_every_example_is_valid_against_its_schema(schema: dict[str, Any]) -> None:
    """Request and answer examples alike: the document shows what it also allows."""
    from jsonschema import Draft202012Validator

    wrong = []
    checked = 0
    for path, method, operation in _operations(schema):
        places = [("request", operation.get("requestBody", {}).get("content") or {})]
        places += [(code, r.get("content") or {}) for code, r in operation["responses"].items()]
        for where, content in places:
            for media_type, media in content.items():
                if "json" not in media_type or "schema" not in media:
                    continue
                validator = Draft202012Validator(
                    {**media["schema"], "components": schema["components"]}
                )
                for value in _example_values(media):
                    checked += 1
                    for error in validator.iter_errors(value):
                        wrong.append(f"{method.upper()} {path} {where}: {error.message}")
    assert checked > 60
    assert wrong == []


def test_the_description_explains_what_an_integrator_needs(schema: dict[str, Any]) -> None:
    description = schema["info"]["description"]
    for needed in (
        "Bearer",
        "token_expired",
        "/api/v1/auth/token/refresh/",
        "Idempotency-Key",
        "idempotency_key_reused",
        '"next"',
        "page_size",
        "RFC 9457",
        "application/problem+json",
        "/problems/",
        "429",
        "Retry-After",
        "webhook-signature",
    ):
        assert needed in description, needed


def test_request_rules_are_the_serializers_rules(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    create = components["JobCreateInput"]
    assert create["additionalProperties"] is False
    assert create["properties"]["type"]["pattern"] == "^[-a-zA-Z0-9_]+$"  # the RegexField's own
    assert create["properties"]["type"]["maxLength"] == 64
    event = components["EventCreateInput"]
    assert event["if"]["properties"]["status"] == {"const": "failed"}
    assert event["then"] == {"required": ["failure_reason"]}
    assert event["else"] == {"not": {"required": ["failure_reason"]}}
    assert components["PatchedJobProgressInput"]["minProperties"] == 1
    jobs = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/jobs/"]["get"]["parameters"]}
    assert jobs["type"]["pattern"] == "^[-a-zA-Z0-9_]+$"
    assert jobs["page_size"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert jobs["status"]["enum"] == [
        "pending",
        "processing",
        "completed",
        "completed_with_errors",
        "failed",
    ]
