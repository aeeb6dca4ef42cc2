"""The seed-compatible endpoints (seeds 000, 002, 003) and the seed 001 push status payloads.

Everything here goes through HTTP with a bearer token, the way a client written against those
APIs would call Jobtrail, and checks what that client sees: status codes, exact bodies and the
rows left in the database.
"""

import copy
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from jobs import services
from jobs.auth import CompanyTokenObtainPairSerializer
from jobs.models import (
    EventSource,
    FailureReason,
    Job,
    JobStatus,
    PushResult,
    PushStatus,
)
from reports.models import Report, ReportStatus
from reports.services import report_build, report_rebuild
from tests.factories import CompanyFactory, JobFactory, job_in_status

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
EVENTS_URL = "/api/v1/export-job-events/"
STATUS_URL = "/services/rest/v1/export/job/status"
RULE = "---------------------------"


def api_job_url(job_id: Any) -> str:
    return f"/engine/api/api-jobs/{job_id}"


def push_url(job_id: Any) -> str:
    return f"/api/v1/jobs/{job_id}/push-results/"


def job_url(job_id: Any) -> str:
    return f"/api/v1/jobs/{job_id}/"


def snapshot(job: Job) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """The job's row and its timeline, to show that a refused request changed nothing."""
    row = Job.objects.values().get(pk=job.pk)
    timeline = list(job.events.order_by("sequence").values_list("sequence", "status"))
    return row, timeline


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["detail"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body.get("errors", [])}


def add_push(job: Job, push_id: str, status: PushStatus, **kwargs: Any) -> PushResult:
    result, created = services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(push_communication_id=push_id, status=status, **kwargs),
    )
    assert created
    return result


# ==============================================================================================
# Seed 000: POST /api/v1/export-job-events/
# ==============================================================================================

# The 15 reasons exactly as the seed lists them.
SEED_000_REASONS = [
    "invalid_configuration",
    "missing_configuration",
    "authentication_failure",
    "accounting_system_authentication_failure",
    "pleo_rate_limit",
    "accounting_system_rate_limit",
    "service_unreachable",
    "accounting_system_unreachable",
    "validation_failure",
    "authorization_failure",
    "integration_unusable",
    "job_expired",
    "service_timeout",
    "accounting_system_timeout",
    "canceled_by_user",
]
EVENT_OUTPUT_KEYS = {
    "jobId",
    "jobCode",
    "event",
    "failureReason",
    "message",
    "sequence",
    "status",
    "createdAt",
}
# (job status before, event) -> job status after; reason sent only with failed.
SEED_000_MOVES = [
    (JobStatus.PENDING, "started", JobStatus.PROCESSING),
    (JobStatus.PROCESSING, "completed", JobStatus.COMPLETED),
    (JobStatus.PROCESSING, "completed_with_errors", JobStatus.COMPLETED_WITH_ERRORS),
    (JobStatus.PROCESSING, "failed", JobStatus.FAILED),
    (JobStatus.PENDING, "completed", JobStatus.COMPLETED),
    (JobStatus.PENDING, "failed", JobStatus.FAILED),
]


def test_failure_reasons_are_the_seeds() -> None:
    assert FailureReason.values == SEED_000_REASONS


@pytest.mark.parametrize("by", ["uuid", "code"])
@pytest.mark.parametrize(("start", "event", "after"), SEED_000_MOVES)
def test_event_moves_the_job(
    api: APIClient, api_user: Any, company: Any, by: str, start: str, event: str, after: str
) -> None:
    job = job_in_status(start, company=company)
    sequence_before = job.events.count()
    body: dict[str, Any] = {"jobId": str(job.pk) if by == "uuid" else job.code, "event": event}
    if event == "failed":
        body["failureReason"] = "accounting_system_unreachable"

    response = api.post(EVENTS_URL, body, format="json")

    assert response.status_code == 201, response.content
    answer = response.json()
    assert set(answer) == EVENT_OUTPUT_KEYS
    assert answer["jobId"] == str(job.pk)
    assert answer["jobCode"] == job.code
    assert answer["event"] == event
    assert answer["status"] == after
    assert answer["sequence"] == sequence_before + 1
    assert answer["message"] == ""
    expected_reason = "accounting_system_unreachable" if event == "failed" else None
    assert answer["failureReason"] == expected_reason

    job.refresh_from_db()
    assert job.status == after
    assert job.failure_reason == (expected_reason or "")
    stored = job.events.get(sequence=answer["sequence"])
    assert stored.status == event
    assert stored.failure_reason == (expected_reason or "")
    assert stored.source == EventSource.API
    assert stored.actor == api_user
    if after in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED):
        assert job.end_time is not None
    assert job.start_time is not None


@pytest.mark.parametrize("reason", SEED_000_REASONS)
def test_failed_with_each_seed_reason(api: APIClient, company: Any, reason: str) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = api.post(
        EVENTS_URL,
        {"jobId": str(job.pk), "event": "failed", "failureReason": reason},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["failureReason"] == reason
    job.refresh_from_db()
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, reason)


def test_newer_form_stores_the_free_text_as_the_event_message(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = api.post(
        EVENTS_URL,
        {
            "jobId": job.code,
            "event": "failed",
            "failureReasonType": "validation_failure",
            "failureReason": "Account 4000 is archived",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["failureReason"] == "validation_failure"
    assert answer["message"] == "Account 4000 is archived"
    assert answer["status"] == JobStatus.FAILED
    job.refresh_from_db()
    assert job.failure_reason == FailureReason.VALIDATION_FAILURE
    assert job.message == "Account 4000 is archived"
    event = job.events.get(sequence=answer["sequence"])
    assert (event.status, event.failure_reason, event.message) == (
        "failed",
        "validation_failure",
        "Account 4000 is archived",
    )


def test_newer_form_without_free_text(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)

    response = api.post(
        EVENTS_URL,
        {"jobId": str(job.pk), "event": "failed", "failureReasonType": "job_expired"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["failureReason"] == "job_expired"
    assert response.json()["message"] == ""


@pytest.mark.parametrize("reason", [{"failureReason": None}, {"failureReasonType": None}])
def test_a_null_reason_on_a_non_failed_event_is_ignored(
    api: APIClient, company: Any, reason: dict[str, Any]
) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)

    response = api.post(
        EVENTS_URL, {"jobId": str(job.pk), "event": "started", **reason}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["failureReason"] is None


@pytest.mark.parametrize("reason", [{}, {"failureReason": None}, {"failureReason": ""}])
def test_failed_without_a_reason_is_refused(
    api: APIClient, company: Any, reason: dict[str, Any]
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    before = snapshot(job)

    response = api.post(
        EVENTS_URL, {"jobId": str(job.pk), "event": "failed", **reason}, format="json"
    )

    body = assert_problem(response, 400, "invalid_failure_reason")
    assert error_fields(body) == {"failureReason"}
    assert snapshot(job) == before


@pytest.mark.parametrize("event", ["started", "completed", "completed_with_errors"])
def test_a_reason_on_a_non_failed_event_is_refused(
    api: APIClient, company: Any, event: str
) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)
    before = snapshot(job)

    response = api.post(
        EVENTS_URL,
        {"jobId": str(job.pk), "event": event, "failureReason": "service_timeout"},
        format="json",
    )

    body = assert_problem(response, 400, "invalid_failure_reason")
    assert error_fields(body) == {"failureReason"}
    assert snapshot(job) == before


def test_a_reason_type_on_a_non_failed_event_names_failure_reason_type(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    before = snapshot(job)

    response = api.post(
        EVENTS_URL,
        {
            "jobId": str(job.pk),
            "event": "completed",
            "failureReasonType": "service_timeout",
            "failureReason": "slow",
        },
        format="json",
    )

    body = assert_problem(response, 400, "invalid_failure_reason")
    assert error_fields(body) == {"failureReasonType"}
    assert snapshot(job) == before


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"event": "failed", "failureReason": "coffee_spilled"}, "failureReason", None),
        (
            {"event": "failed", "failureReasonType": "coffee_spilled", "failureReason": "x"},
            "failureReasonType",
            "validation_error",
        ),
        ({"event": "exploded"}, "event", "validation_error"),
        ({"event": "created"}, "event", "validation_error"),
        ({"event": "progress"}, "event", "validation_error"),
        ({"event": "STARTED"}, "event", "validation_error"),
        ({"event": 1}, "event", "validation_error"),
        ({"event": "started", "status": "started"}, "status", "validation_error"),
        ({"event": "started", "message": "hello"}, "message", "validation_error"),
        ({"event": "started", "jobID": "x"}, "jobID", "validation_error"),
    ],
)
def test_bad_event_input_is_refused(
    api: APIClient, company: Any, payload: dict[str, Any], field: str, code: str | None
) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)
    before = snapshot(job)

    response = api.post(EVENTS_URL, {"jobId": str(job.pk), **payload}, format="json")

    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    if code:
        assert body["code"] == code
    assert field in error_fields(body)
    assert snapshot(job) == before


@pytest.mark.parametrize(
    "payload",
    [{"event": "started"}, {"jobId": 12, "event": "started"}, {"jobId": None, "event": "started"}],
)
def test_a_missing_or_non_string_job_id_is_refused(api: APIClient, payload: dict[str, Any]) -> None:
    body = assert_problem(api.post(EVENTS_URL, payload, format="json"), 400, "validation_error")
    assert error_fields(body) == {"jobId"}


def test_malformed_json_is_refused(api: APIClient) -> None:
    response = api.post(EVENTS_URL, '{"jobId": "x", "event": ', content_type="application/json")
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    ("start", "event"),
    [
        (JobStatus.PROCESSING, "started"),
        (JobStatus.COMPLETED, "started"),
        (JobStatus.COMPLETED, "completed"),
        (JobStatus.COMPLETED, "failed"),
        (JobStatus.COMPLETED_WITH_ERRORS, "completed"),
        (JobStatus.FAILED, "completed_with_errors"),
        (JobStatus.FAILED, "failed"),
    ],
)
def test_an_illegal_status_change_is_409_invalid_export_job_status_change(
    api: APIClient, company: Any, start: str, event: str
) -> None:
    job = job_in_status(start, company=company)
    before = snapshot(job)
    body: dict[str, Any] = {"jobId": str(job.pk), "event": event}
    if event == "failed":
        body["failureReason"] = "service_timeout"

    response = api.post(EVENTS_URL, body, format="json")

    assert response.status_code == 409, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["type"] == "INVALID_EXPORT_JOB_STATUS_CHANGE"
    assert problem["status"] == 409
    assert problem["code"] == ("invalid_transition" if start == "processing" else "job_finished")
    assert {"type", "title", "status", "detail", "code"} <= set(problem)
    assert job.code in problem["detail"]
    assert snapshot(job) == before


def test_a_canceled_job_refuses_later_events(api: APIClient, api_user: Any, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_cancel(job_id=job.pk, actor=api_user)
    job.refresh_from_db()
    before = snapshot(job)

    response = api.post(EVENTS_URL, {"jobId": job.code, "event": "completed"}, format="json")

    assert response.status_code == 409
    assert response.json()["type"] == "INVALID_EXPORT_JOB_STATUS_CHANGE"
    assert snapshot(job) == before


@pytest.mark.parametrize("by", ["uuid", "code"])
def test_another_companys_job_is_not_found(other_api: APIClient, company: Any, by: str) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)
    before = snapshot(job)

    response = other_api.post(
        EVENTS_URL,
        {"jobId": str(job.pk) if by == "uuid" else job.code, "event": "started"},
        format="json",
    )

    assert_problem(response, 404, "not_found")
    assert snapshot(job) == before


@pytest.mark.parametrize(
    "job_id", [pytest.param(str(uuid.uuid4()), id="random-uuid"), "JOB-NOSUCHJB"]
)
def test_an_unknown_job_is_not_found(api: APIClient, job_id: str) -> None:
    response = api.post(EVENTS_URL, {"jobId": job_id, "event": "started"}, format="json")
    assert_problem(response, 404, "not_found")


def test_the_same_code_in_two_companies_moves_only_the_callers_job(
    api: APIClient, company: Any
) -> None:
    mine = JobFactory(company=company, code="EXPORT-2024-02")
    theirs = JobFactory(company=CompanyFactory(), code="EXPORT-2024-02")

    response = api.post(EVENTS_URL, {"jobId": "EXPORT-2024-02", "event": "started"}, format="json")

    assert response.status_code == 201
    assert response.json()["jobId"] == str(mine.pk)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == (JobStatus.PROCESSING, JobStatus.PENDING)


@pytest.mark.parametrize(
    "code",
    [
        "7c1e5a0e-3b7d-4d3f-9a51-2f0d2c7b9e11",  # the integration's own UUID used as the code
        "deadbeefdeadbeefdeadbeefdeadbeef",  # any 32 hex digits parse as a UUID
    ],
)
def test_a_uuid_shaped_job_code_is_found_by_code(api: APIClient, company: Any, code: str) -> None:
    """Codes are free text (``[A-Za-z0-9._-]+``); one that parses as a UUID must still work.

    BUG: the view tries ``jobId`` as the job's id whenever it parses as a UUID and answers 404
    without falling back to the code.
    """
    created = api.post("/api/v1/jobs/", {"type": "export", "code": code}, format="json")
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]

    response = api.post(EVENTS_URL, {"jobId": code, "event": "started"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["jobId"] == job_id
    assert Job.objects.get(pk=job_id).status == JobStatus.PROCESSING


def test_events_need_a_token(company: Any) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)
    before = snapshot(job)

    response = APIClient().post(
        EVENTS_URL, {"jobId": str(job.pk), "event": "started"}, format="json"
    )

    assert_problem(response, 401, "not_authenticated")
    assert snapshot(job) == before


def test_a_bad_token_is_refused(company: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    response = client.post(EVENTS_URL, {"jobId": "x", "event": "started"}, format="json")
    assert_problem(response, 401, "invalid_token")


# ==============================================================================================
# Seed 002: POST /services/rest/v1/export/job/status
# ==============================================================================================

STATUS_KEYS = {"successful", "message", "errors", "warnings", "status", "filePath"}
STATUS_ERROR_KEYS = {"code", "fieldName", "description", "message", "errorParams"}
STATUS_WARNING_KEYS = {"code", "message", "description"}


def export_status(client: APIClient, body: Any) -> Any:
    return client.post(STATUS_URL, body, format="json")


@pytest.mark.parametrize(
    ("job_status", "expected"),
    [
        (JobStatus.PENDING, "SCHEDULED"),
        (JobStatus.PROCESSING, "RUNNING"),
        (JobStatus.COMPLETED, "SUCCESSFUL"),
        (JobStatus.COMPLETED_WITH_ERRORS, "SUCCESSFUL"),
        (JobStatus.FAILED, "FAILED"),
    ],
)
def test_export_status_maps_every_job_status(
    api: APIClient, company: Any, job_status: str, expected: str
) -> None:
    job = job_in_status(job_status, company=company)
    finished = expected == "SUCCESSFUL"
    if finished:
        report_build(job_id=job.pk)  # SUCCESSFUL comes with the link

    response = export_status(api, {"jobCode": job.code})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body["successful"] is True
    assert body["status"] == expected
    assert body["errors"] == []
    assert isinstance(body["message"], str) and body["message"]
    assert (body["filePath"] or "").startswith("http") is finished


def test_a_completed_job_reads_running_until_its_link_is_built(
    api: APIClient, company: Any
) -> None:
    """Seed 002: "Once the status becomes SUCCESSFUL, the link to download the report in .csv
    format is also sent in the response." A client written against it stops polling at
    SUCCESSFUL and reads filePath, so until the CSV is built the job reads RUNNING."""
    job = job_in_status(JobStatus.COMPLETED, company=company)

    waiting = export_status(api, {"jobCode": job.code})

    assert (waiting.json()["status"], waiting.json()["filePath"]) == ("RUNNING", None)
    assert waiting["Retry-After"] == str(settings.JOBTRAIL_POLL_INTERVAL)
    report_build(job_id=job.pk)
    built = export_status(api, {"jobCode": job.code})
    assert built.json()["status"] == "SUCCESSFUL"
    assert built.json()["filePath"].startswith("http")
    assert not built.has_header("Retry-After")


def test_a_completed_job_whose_report_could_not_be_built_reads_failed(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED_WITH_ERRORS, company=company)
    report_build(job_id=job.pk)
    Report.objects.filter(job=job).update(status=ReportStatus.FAILED)

    response = export_status(api, {"jobCode": job.code})

    body = response.json()
    assert (body["successful"], body["status"], body["filePath"]) == (True, "FAILED", None)
    [error] = body["errors"]
    assert set(error) == STATUS_ERROR_KEYS and error["fieldName"] == "filePath"
    assert not response.has_header("Retry-After")  # staff must build it again
    report_rebuild(job=job)
    report_build(job_id=job.pk)
    again = export_status(api, {"jobCode": job.code}).json()
    assert (again["status"], again["errors"]) == ("SUCCESSFUL", [])


def test_export_status_of_a_canceled_job_is_cancelled(
    api: APIClient, api_user: Any, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_cancel(job_id=job.pk, actor=api_user)

    body = export_status(api, {"jobCode": job.code}).json()

    assert set(body) == STATUS_KEYS
    assert (body["successful"], body["status"]) == (True, "CANCELLED")
    assert body["errors"] == []


def test_export_status_of_an_expired_job_is_failed(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_expire(job_id=job.pk)

    assert export_status(api, {"jobCode": job.code}).json()["status"] == "FAILED"


def test_export_status_carries_the_job_message(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PENDING, company=company)
    services.job_start(job_id=job.pk, message="Export started")

    body = export_status(api, {"jobCode": job.code}).json()

    assert body["message"] == "Export started"


def test_export_status_of_an_unknown_code(api: APIClient) -> None:
    response = export_status(api, {"jobCode": "NOPE-1"})

    assert response.status_code == 200  # as that API does
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body["successful"] is False
    assert body["status"] is None
    assert body["filePath"] is None
    assert body["warnings"] == []
    assert isinstance(body["message"], str) and body["message"]
    [error] = body["errors"]
    assert set(error) == STATUS_ERROR_KEYS
    assert error["fieldName"] == "jobCode"
    assert isinstance(error["code"], int)
    assert isinstance(error["errorParams"], dict)
    assert "NOPE-1" in error["description"]


def test_export_status_reads_the_job_code_without_surrounding_spaces(
    api: APIClient, company: Any
) -> None:
    """Seed 000 trims the jobId it is sent; a code holds no spaces, so seed 002 reads
    " JOB-1 " as JOB-1 too (it answered "no export job with code ' JOB-1 '")."""
    job_in_status(JobStatus.PROCESSING, company=company, code="JOB-1")

    answer = export_status(api, {"jobCode": " JOB-1\t"}).json()

    assert answer["successful"] is True
    assert answer["status"] == "RUNNING"


@pytest.mark.parametrize(
    "body", [{}, {"jobCode": ""}, {"jobCode": "   "}, {"jobCode": None}, {"jobCode": 42}, []]
)
def test_export_status_without_a_usable_job_code(api: APIClient, body: Any) -> None:
    response = export_status(api, body)

    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == STATUS_KEYS
    assert answer["successful"] is False
    assert answer["status"] is None
    [error] = answer["errors"]
    assert set(error) == STATUS_ERROR_KEYS
    assert error["fieldName"] == "jobCode"


@pytest.mark.parametrize(
    "text",
    [
        '{"jobCode": ',
        # valid for Python's json, not JSON (nor for the database): refused as malformed
        '{"jobCode": "JOB-1", "x": NaN}',
        '{"jobCode": "JOB-1", "x": 1e999}',
    ],
)
def test_export_status_with_malformed_json(api: APIClient, company: Any, text: str) -> None:
    job_in_status(JobStatus.COMPLETED, company=company, code="JOB-1")
    response = api.post(STATUS_URL, text, content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body["successful"] is False
    [error] = body["errors"]
    assert set(error) == STATUS_ERROR_KEYS


def test_export_status_does_not_leak_another_companys_job(api: APIClient) -> None:
    theirs = job_in_status(JobStatus.COMPLETED, company=CompanyFactory(), code="THEIRS-1")
    unknown = export_status(api, {"jobCode": "NEVER-1"}).json()

    leaked = export_status(api, {"jobCode": "THEIRS-1"})

    assert leaked.status_code == 200
    answer = leaked.json()
    assert answer["successful"] is False
    assert answer["status"] is None
    assert answer == json.loads(json.dumps(unknown).replace("NEVER-1", "THEIRS-1"))
    assert str(theirs.pk) not in leaked.content.decode()


def test_export_status_reads_the_callers_job_when_codes_collide(
    api: APIClient, company: Any
) -> None:
    job_in_status(JobStatus.PENDING, company=company, code="SHARED-1")
    job_in_status(JobStatus.COMPLETED, company=CompanyFactory(), code="SHARED-1")

    assert export_status(api, {"jobCode": "SHARED-1"}).json()["status"] == "SCHEDULED"


def test_export_status_warns_when_a_completed_job_has_failed_pushes(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=company)
    add_push(job, "push-ok", PushStatus.SUCCESS)
    add_push(job, "push-bad", PushStatus.FAILED, response_code=400)

    report_build(job_id=job.pk)  # SUCCESSFUL comes with its link

    body = export_status(api, {"jobCode": job.code}).json()

    assert body["status"] == "SUCCESSFUL"
    [warning] = body["warnings"]
    assert set(warning) == STATUS_WARNING_KEYS
    assert isinstance(warning["code"], int)
    assert "1" in warning["description"]


def test_export_status_does_not_warn_for_a_clean_completed_job(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=company)
    add_push(job, "push-ok", PushStatus.SUCCESS)

    assert export_status(api, {"jobCode": job.code}).json()["warnings"] == []


def test_export_status_says_how_many_failed_when_completed_with_errors(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.COMPLETED_WITH_ERRORS, company=company)
    add_push(job, "push-1", PushStatus.SUCCESS)
    add_push(job, "push-2", PushStatus.FAILED)
    add_push(job, "push-3", PushStatus.FAILED)

    report_build(job_id=job.pk)  # SUCCESSFUL comes with its link

    body = export_status(api, {"jobCode": job.code}).json()

    assert body["status"] == "SUCCESSFUL"
    [warning] = body["warnings"]
    assert set(warning) == STATUS_WARNING_KEYS
    assert re.search(r"\b2 of 3\b", warning["description"]), warning


@pytest.mark.parametrize("job_status", [JobStatus.PENDING, JobStatus.PROCESSING])
def test_export_status_of_an_unfinished_job_says_when_to_retry(
    api: APIClient, company: Any, job_status: str
) -> None:
    job = job_in_status(job_status, company=company)

    response = export_status(api, {"jobCode": job.code})

    assert response["Retry-After"] == str(settings.JOBTRAIL_POLL_INTERVAL)
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize(
    "job_status", [JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED]
)
def test_export_status_of_a_finished_job_has_no_retry_after(
    api: APIClient, company: Any, job_status: str
) -> None:
    """Once its report is built (a failed job has none to wait for)."""
    job = job_in_status(job_status, company=company)
    report_build(job_id=job.pk)  # nothing to build for a failed job
    assert not export_status(api, {"jobCode": job.code}).has_header("Retry-After")


def test_the_seeds_example_request_as_printed_answers_200(api_user: Any, company: Any) -> None:
    """Seed 002 prints ``Header (Authorization): bearer {access-token}``: lower case."""
    job = job_in_status(JobStatus.PROCESSING, company=company)
    client = APIClient()
    token = CompanyTokenObtainPairSerializer.get_token(api_user).access_token  # type: ignore[attr-defined]

    response = client.generic(
        "POST",
        STATUS_URL,
        json.dumps({"jobCode": job.code}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"bearer {token}",
    )

    assert response.status_code == 200, response.content[:300]
    assert response.json()["successful"] is True
    assert response.json()["status"] == "RUNNING"


def test_export_status_needs_a_token() -> None:
    assert_problem(
        APIClient().post(STATUS_URL, {"jobCode": "X"}, format="json"), 401, "not_authenticated"
    )


# ==============================================================================================
# Seed 003: GET /engine/api/api-jobs/{id}
# ==============================================================================================

# The response schema exactly as seed 003 prints it.
SEED_003_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "company_id": {"type": "string"},
        "start_time": {"type": "string", "format": "date-time"},
        "end_time": {"type": "string", "format": "date-time"},
        "status": {"type": "string"},
        "message": {"type": "string"},
        "total_records": {"type": "integer"},
        "effected_records": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
    "required": [
        "id",
        "type",
        "company_id",
        "start_time",
        "end_time",
        "status",
        "message",
        "total_records",
        "effected_records",
        "created_at",
        "updated_at",
    ],
}
# The seed's own response example.
SEED_003_EXAMPLE = {
    "id": "43dbbc35-d114-4da5-a1c0-6abbea6d7bf5",
    "type": "customer_case_bulk_update",
    "company_id": "aff00be6-f734-4094-a8ae-62874485dac0",
    "start_time": "2024-02-21 10:21:31",
    "end_time": "2024-02-21 10:21:35",
    "status": "completed",
    "message": "---------------------------\nCase ID: 4528a261-917d-4cbc-939e-7ea48cffca69 failed "
    "with the following errors:\n\nCase does not exist or record already updated.\n"
    "------------------------------------------------------\nCase ID: "
    "53c3a84d-8eef-4015-8bc6-499f8eccd161 failed with the following errors:\n\nCase does not "
    "exist or record already updated.\n---------------------------",
    "total_records": 773,
    "effected_records": 770,
    "created_at": "2024-02-21T10:21:31.000000Z",
    "updated_at": "2024-02-21T10:21:35.000000Z",
}
# DESIGN lets start_time/end_time be null until set (the seed: "once the end_time is not null").
NULLABLE_TIMES_SCHEMA = copy.deepcopy(SEED_003_SCHEMA)
for _name in ("start_time", "end_time"):
    NULLABLE_TIMES_SCHEMA["properties"][_name]["type"] = ["string", "null"]

API_JOB_KEYS = set(SEED_003_SCHEMA["properties"])
SECONDS_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
MICROS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def parse_seconds(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def parse_micros(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_the_seed_example_matches_the_copied_schema() -> None:
    """Checks the schema copy above; format is an annotation (the seed's own times are not
    RFC 3339 date-times, so asserting formats would refuse the seed's example)."""
    jsonschema.validate(SEED_003_EXAMPLE, SEED_003_SCHEMA)
    assert set(SEED_003_EXAMPLE) == API_JOB_KEYS
    assert SECONDS_RE.match(SEED_003_EXAMPLE["start_time"])
    assert MICROS_RE.match(SEED_003_EXAMPLE["created_at"])


def test_api_job_of_a_completed_job_matches_the_seed(api: APIClient, company: Any) -> None:
    job = JobFactory(company=company, type="customer_case_bulk_update", total_records=773)
    services.job_start(job_id=job.pk)
    services.job_record_progress(job_id=job.pk, effected_records=770)
    services.job_complete(job_id=job.pk, message="Done")
    job.refresh_from_db()

    response = api.get(api_job_url(job.pk))

    assert response.status_code == 200
    body = response.json()
    jsonschema.validate(body, SEED_003_SCHEMA)
    assert set(body) == API_JOB_KEYS
    assert body["id"] == str(job.pk)
    assert body["type"] == "customer_case_bulk_update"
    assert body["company_id"] == str(company.pk)
    assert body["status"] == "completed"
    assert body["message"] == "Done"
    assert (body["total_records"], body["effected_records"]) == (773, 770)
    assert SECONDS_RE.match(body["start_time"]) and SECONDS_RE.match(body["end_time"])
    assert MICROS_RE.match(body["created_at"]) and MICROS_RE.match(body["updated_at"])
    assert job.start_time and job.end_time
    assert parse_seconds(body["start_time"]) == job.start_time.replace(microsecond=0)
    assert parse_seconds(body["end_time"]) == job.end_time.replace(microsecond=0)
    assert parse_micros(body["created_at"]) == job.created_at
    assert parse_micros(body["updated_at"]) == job.updated_at
    assert parse_seconds(body["start_time"]) <= parse_seconds(body["end_time"])
    assert not response.has_header("Retry-After")


@pytest.mark.parametrize("job_status", [JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED])
def test_effected_records_agree_between_v1_and_the_api_job_record(
    api: APIClient, company: Any, job_status: str
) -> None:
    """Records actually affected: 0 until the integration reports a count, in both shapes."""
    job = job_in_status(job_status, company=company)

    v1 = api.get(job_url(job.pk)).json()
    seed = api.get(api_job_url(job.pk)).json()

    assert v1["effected_records"] == seed["effected_records"] == 0


def test_a_reported_count_reads_the_same_in_v1_and_the_api_job_record(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    services.job_record_progress(job_id=job.pk, effected_records=3)

    v1 = api.get(job_url(job.pk)).json()
    seed = api.get(api_job_url(job.pk)).json()

    assert v1["effected_records"] == seed["effected_records"] == 3


@pytest.mark.parametrize(
    ("job_status", "expected"),
    [
        (JobStatus.PENDING, "pending"),
        (JobStatus.PROCESSING, "processing"),
        (JobStatus.COMPLETED, "completed"),
        (JobStatus.COMPLETED_WITH_ERRORS, "completed"),
        (JobStatus.FAILED, "failed"),
    ],
)
def test_api_job_maps_every_status(
    api: APIClient, company: Any, job_status: str, expected: str
) -> None:
    job = job_in_status(job_status, company=company)

    response = api.get(api_job_url(job.pk))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == API_JOB_KEYS
    assert body["status"] == expected
    jsonschema.validate(body, NULLABLE_TIMES_SCHEMA)
    if job_status != JobStatus.PENDING:
        assert SECONDS_RE.match(body["start_time"])
    if job_status in (JobStatus.PENDING, JobStatus.PROCESSING):
        assert body["end_time"] is None  # "once the end_time is not null ... stop pinging"
        assert response.has_header("Retry-After")
    else:
        jsonschema.validate(body, SEED_003_SCHEMA)
        assert SECONDS_RE.match(body["end_time"])
        assert not response.has_header("Retry-After")


@pytest.mark.parametrize(
    ("message", "expected"),
    [("", "Failed (service_timeout)"), ("Gave up", "Gave up (service_timeout)")],
)
def test_api_job_of_a_failed_job_names_its_failure_reason(
    api: APIClient, company: Any, message: str, expected: str
) -> None:
    """Seed 003: "The message will contain any error/information message produced during
    the job": a failed job's says why, as seed 002's does."""
    job = JobFactory(company=company)
    services.job_fail(job_id=job.pk, failure_reason="service_timeout", message=message)

    assert api.get(api_job_url(job.pk)).json()["message"] == expected


def test_api_job_completed_with_errors_without_failed_pushes_says_so(
    api: APIClient, company: Any
) -> None:
    """Seed 003 has no status for it (``completed``): with no message and no failed push
    result to list, its record read as a clean completion."""
    job = JobFactory(company=company)
    services.job_start(job_id=job.pk)
    services.job_complete_with_errors(job_id=job.pk)

    body = api.get(api_job_url(job.pk)).json()

    assert (body["status"], body["message"]) == ("completed", "Completed with errors")


def test_api_job_without_a_declared_total_never_reads_fewer_accepted_than_effected(
    api: APIClient, company: Any
) -> None:
    """A job created without total_records read total_records 0 beside effected_records 6:
    seed 003's total is "the exact numbers of items accepted", never fewer than effected."""
    job = JobFactory(company=company, total_records=None)
    services.job_start(job_id=job.pk)
    services.job_record_progress(job_id=job.pk, effected_records=6)

    body = api.get(api_job_url(job.pk)).json()

    assert (body["total_records"], body["effected_records"]) == (6, 6)
    services.job_record_progress(job_id=job.pk, total_records=10)
    body = api.get(api_job_url(job.pk)).json()
    assert (body["total_records"], body["effected_records"]) == (10, 6)


def test_api_job_of_a_pending_job_has_null_times(api: APIClient, company: Any) -> None:
    job = JobFactory(company=company)

    response = api.get(api_job_url(job.pk))

    body = response.json()
    assert body["start_time"] is None
    assert body["end_time"] is None
    assert (body["total_records"], body["effected_records"]) == (0, 0)
    assert body["message"] == ""
    jsonschema.validate(body, NULLABLE_TIMES_SCHEMA)
    # The seed's schema types the times as strings only: null is the documented deviation.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, SEED_003_SCHEMA)
    assert response["Retry-After"] == str(settings.JOBTRAIL_POLL_INTERVAL)


SEED_001_FAILED_VALIDATION = (
    "Business Validation Error: Multi Currency should be enabled to perform this operation."
)


def test_api_job_lists_failed_pushes_in_the_message_like_the_seed(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    add_push(job, "push-ok-1", PushStatus.SUCCESS, response_code=200)
    add_push(
        job,
        "60473b57f0cdd1683ca71f60",
        PushStatus.FAILED,
        response_code=400,
        validation_errors=[{"field": "currencyRef", "message": SEED_001_FAILED_VALIDATION}],
    )
    add_push(job, "push-bad-2", PushStatus.FAILED, response_code=502)
    services.job_complete_with_errors(job_id=job.pk)

    body = api.get(api_job_url(job.pk)).json()

    jsonschema.validate(body, SEED_003_SCHEMA)
    assert body["status"] == "completed"
    message = body["message"]
    assert "60473b57f0cdd1683ca71f60" in message
    assert SEED_001_FAILED_VALIDATION in message
    assert "push-bad-2" in message
    assert "push-ok-1" not in message
    # The seed's layout: a rule, blocks "<ID> failed with the following errors:\n\n<errors>"
    # separated by a double rule, and a closing rule.
    assert message.startswith(RULE + "\n")
    assert message.endswith("\n" + RULE)
    blocks = message[len(RULE) + 1 : -len(RULE) - 1].split("\n" + RULE + RULE + "\n")
    assert len(blocks) == 2
    assert blocks[0].startswith(
        "Push ID: 60473b57f0cdd1683ca71f60 failed with the following errors:\n\n"
    )
    assert blocks[1].startswith("Push ID: push-bad-2 failed with the following errors:\n\n")


def test_api_job_keeps_its_own_message_before_the_failed_pushes(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    add_push(job, "push-bad", PushStatus.FAILED, response_code=400)
    services.job_complete_with_errors(job_id=job.pk, message="2 of 3 exported")

    message = api.get(api_job_url(job.pk)).json()["message"]

    assert message.startswith("2 of 3 exported\n" + RULE)
    assert "push-bad" in message


def test_api_job_of_another_company_is_not_found(other_api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=company)
    body = assert_problem(other_api.get(api_job_url(job.pk)), 404, "not_found")
    assert str(company.pk) not in json.dumps(body)


def test_api_job_of_an_unknown_id_is_not_found(api: APIClient) -> None:
    assert_problem(api.get(api_job_url(uuid.uuid4())), 404, "not_found")


def test_api_job_of_a_non_uuid_is_not_found(api: APIClient) -> None:
    assert_problem(api.get(api_job_url("not-a-uuid")), 404, "not_found")


def test_api_job_needs_a_token(company: Any) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=company)
    assert_problem(APIClient().get(api_job_url(job.pk)), 401, "not_authenticated")


# ==============================================================================================
# Seed 001: POST/GET /api/v1/jobs/{id}/push-results/
# ==============================================================================================

# The two examples verbatim from the seed. The first has a trailing comma after
# serviceAccountRef, which makes it invalid JSON.
SEED_001_SUCCESS_TEXT = """{
"data": {
"event": "push",
"connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
"businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
"serviceName": "quickbooks",
"dataType": "invoices",
"pushCommunicationId": "60473b57f0cdd1683ca71f60",
"sourceObjectIds": ["354"],
"requestedOn": "2021-03-09T19:56:03.952Z",
"completedOn": "2021-03-09T19:56:03.952Z",
"status": "success",
"responseCode": 200,
"serviceAccountRef": {
"id": "DEV",
"entityRef": {
"id": "100"
}
},
},
"requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"
}"""
SEED_001_FAILED_TEXT = """{
"data": {
"event": "push",
"connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
"businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
"serviceName": "quickbooks",
"dataType": "invoices",
"pushCommunicationId": "60473b57f0cdd1683ca71f60",
"sourceObjectId": ["354"],
"requestedOn": "2021-03-09T19:56:03.952Z",
"completedOn": "2021-03-09T19:56:03.952Z",
"status": "failed",
"responseCode": 400,
"serviceAccountRef": {
"id": "DEV",
"entityRef": {
"id": "100"
}
},
"validation": {
"errors": [
{
"field": "currencyRef",
"message": "Business Validation Error: Multi Currency should be enabled to perform this operation."
}
]
}
},
"requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"
}"""
SEED_001_SUCCESS_FIXED_TEXT = SEED_001_SUCCESS_TEXT.replace(
    '}\n},\n},\n"requestId"', '}\n}\n},\n"requestId"'
)
PUSH_ID = "60473b57f0cdd1683ca71f60"
REQUEST_ID = "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a"
SEED_001_TIME = datetime(2021, 3, 9, 19, 56, 3, 952000, tzinfo=UTC)
PUSH_OUTPUT_KEYS = {
    "job_id",
    "push_communication_id",
    "status",
    "response_code",
    "connection_id",
    "business_name",
    "service_name",
    "data_type",
    "source_object_ids",
    "requested_on",
    "completed_on",
    "validation_errors",
    "service_account_ref",
    "request_id",
    "received_at",
}


def success_payload(**data: Any) -> dict[str, Any]:
    payload = json.loads(SEED_001_SUCCESS_FIXED_TEXT)
    payload["data"].update(data)
    return payload


def post_text(client: APIClient, job: Job, text: str) -> Any:
    return client.post(push_url(job.pk), text, content_type="application/json")


def test_the_seed_success_example_is_invalid_json_and_the_fix_is_one_comma() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(SEED_001_SUCCESS_TEXT)
    assert SEED_001_SUCCESS_FIXED_TEXT != SEED_001_SUCCESS_TEXT
    assert len(SEED_001_SUCCESS_TEXT) - len(SEED_001_SUCCESS_FIXED_TEXT) == 1
    json.loads(SEED_001_SUCCESS_FIXED_TEXT)
    json.loads(SEED_001_FAILED_TEXT)


def test_the_verbatim_seed_success_example_is_a_clear_400(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    before = snapshot(job)

    response = post_text(api, job, SEED_001_SUCCESS_TEXT)

    body = assert_problem(response, 400, "malformed_json")
    assert "JSON" in body["detail"]
    assert not PushResult.objects.exists()
    assert snapshot(job) == before


def test_the_seed_success_example_is_stored(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = post_text(api, job, SEED_001_SUCCESS_FIXED_TEXT)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PUSH_OUTPUT_KEYS | {"ignored_fields"}
    assert body["ignored_fields"] == []  # the seed's fields are all read
    assert body["job_id"] == str(job.pk)
    assert body["push_communication_id"] == PUSH_ID
    assert body["status"] == "success"
    assert body["response_code"] == 200
    assert body["source_object_ids"] == ["354"]
    assert body["validation_errors"] == []
    assert body["request_id"] == REQUEST_ID

    result = PushResult.objects.get()
    assert result.job_id == job.pk
    assert result.push_communication_id == PUSH_ID
    assert result.status == PushStatus.SUCCESS
    assert result.response_code == 200
    assert result.source_object_ids == ["354"]
    assert result.service_account_ref == {"id": "DEV", "entityRef": {"id": "100"}}
    assert result.requested_on == SEED_001_TIME
    assert result.completed_on == SEED_001_TIME
    assert result.request_id == REQUEST_ID
    assert result.connection_id == "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00"
    assert result.business_name == "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142"
    assert result.service_name == "quickbooks"
    assert result.data_type == "invoices"
    assert result.validation_errors == []


def test_the_seed_failed_example_is_stored(api: APIClient, company: Any) -> None:
    job_in_status(JobStatus.PROCESSING, company=company)  # the first job, left alone
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = post_text(api, job, SEED_001_FAILED_TEXT)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PUSH_OUTPUT_KEYS | {"ignored_fields"}
    assert body["ignored_fields"] == []  # the seed's fields are all read
    assert body["status"] == "failed"
    assert body["source_object_ids"] == ["354"]  # the seed spells it sourceObjectId here
    result = PushResult.objects.get()
    assert result.job_id == job.pk
    assert result.status == PushStatus.FAILED
    assert result.response_code == 400
    assert result.source_object_ids == ["354"]
    assert result.validation_errors == [
        {"field": "currencyRef", "message": SEED_001_FAILED_VALIDATION}
    ]
    assert result.requested_on == SEED_001_TIME
    assert result.request_id == REQUEST_ID


def test_both_seed_examples_on_two_jobs(api: APIClient, company: Any) -> None:
    first = job_in_status(JobStatus.PROCESSING, company=company)
    second = job_in_status(JobStatus.PROCESSING, company=company)

    assert post_text(api, first, SEED_001_SUCCESS_FIXED_TEXT).status_code == 201
    assert post_text(api, second, SEED_001_FAILED_TEXT).status_code == 201

    assert set(PushResult.objects.values_list("job_id", "status")) == {
        (first.pk, "success"),
        (second.pk, "failed"),
    }


def test_a_repeated_push_communication_id_answers_the_stored_one(
    api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    first = post_text(api, job, SEED_001_SUCCESS_FIXED_TEXT)
    assert first.status_code == 201

    again = post_text(api, job, SEED_001_SUCCESS_FIXED_TEXT)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert PushResult.objects.count() == 1


def test_a_different_report_under_a_stored_id_does_not_overwrite_it(
    api: APIClient, company: Any
) -> None:
    """The seed's two examples share one pushCommunicationId: on one job the second is a repeat."""
    job = job_in_status(JobStatus.PROCESSING, company=company)
    first = post_text(api, job, SEED_001_SUCCESS_FIXED_TEXT)

    again = post_text(api, job, SEED_001_FAILED_TEXT)

    assert again.status_code == 200
    assert again.json() == first.json()
    result = PushResult.objects.get()
    assert (result.status, result.validation_errors) == (PushStatus.SUCCESS, [])


def test_unknown_fields_are_accepted_and_listed_back(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    payload = success_payload(
        pushCommunicationId="push-extra",
        somethingNew={"nested": [1, 2]},
        retryCount=3,
        clientRef=None,
        validationErrors=[{"field": "memo", "message": "misspelled: not read"}],
    )
    payload["webhookVersion"] = "2"  # beside data: listed too
    payload["requestID"] = payload.pop("requestId")  # a misspelled name must not vanish unseen

    response = api.post(push_url(job.pk), payload, format="json")

    assert response.status_code == 201, response.content
    expected = [
        "/requestID",  # beside data: a JSON Pointer from the payload's root
        "/webhookVersion",
        "clientRef",
        "retryCount",
        "somethingNew",
        "validationErrors",
    ]
    assert response.json()["ignored_fields"] == expected
    result = PushResult.objects.get()
    assert result.push_communication_id == "push-extra"
    assert result.validation_errors == []  # the misspelled key was not read as errors
    assert result.ignored_fields == expected  # kept for staff

    repeat = api.post(
        push_url(job.pk), success_payload(pushCommunicationId="push-extra"), format="json"
    )
    assert repeat.status_code == 200
    assert repeat.json()["ignored_fields"] == []  # what this request sent


def test_unread_names_inside_validation_are_listed_back(api: APIClient, company: Any) -> None:
    """A typo below the top level (``validation.error``, an item's ``fieldName``) left the
    result without its errors and listed nothing: it is listed as a path from ``data``."""
    job = job_in_status(JobStatus.PROCESSING, company=company)
    payload = success_payload(pushCommunicationId="push-nested", status="failed")
    payload["data"]["validation"] = {
        "errors": [
            {"field": "memo", "message": "too long"},
            {"fieldName": "amount", "msg": "negative"},
            {"fieldName": "date", "message": "in the future"},
        ],
        "error": [{"field": "x", "message": "singular: not read"}],
    }
    payload["data"]["sourceObjectIds"] = ["inv-1"]
    payload["data"]["sourceObjectId"] = ["inv-2"]  # both spellings: the first is read

    response = api.post(push_url(job.pk), payload, format="json")

    assert response.status_code == 201, response.content
    expected = [
        "sourceObjectId",
        "validation/error",
        "validation/errors/*/fieldName",
        "validation/errors/*/msg",
    ]
    assert response.json()["ignored_fields"] == expected
    result = PushResult.objects.get(push_communication_id="push-nested")
    assert result.ignored_fields == expected
    assert result.source_object_ids == ["inv-1"]
    assert result.validation_errors[0] == {"field": "memo", "message": "too long"}


def test_a_push_with_only_known_fields_ignores_nothing(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = api.post(push_url(job.pk), success_payload(), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["ignored_fields"] == []
    assert PushResult.objects.get().ignored_fields == []


def test_a_minimal_push_report(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = api.post(
        push_url(job.pk),
        {"data": {"pushCommunicationId": "push-min", "status": "failed"}},
        format="json",
    )

    assert response.status_code == 201, response.content
    result = PushResult.objects.get()
    assert (result.status, result.source_object_ids, result.request_id) == ("failed", [], "")
    assert result.response_code is None


def _without(key: str) -> dict[str, Any]:
    payload = success_payload()
    del payload["data"][key]
    return payload


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_without("pushCommunicationId"), "data.pushCommunicationId"),
        (_without("status"), "data.status"),
        (success_payload(status="partial"), "data.status"),
        (success_payload(status="SUCCESS"), "data.status"),
        (success_payload(pushCommunicationId=""), "data.pushCommunicationId"),
        (success_payload(pushCommunicationId=60473), "data.pushCommunicationId"),
        (success_payload(responseCode="200"), "data.responseCode"),
        (success_payload(requestedOn="yesterday"), "data.requestedOn"),
        (success_payload(sourceObjectIds="354"), "data.sourceObjectIds"),
        (success_payload(event="pull"), "data.event"),
        (
            success_payload(validation={"errors": [{"field": "x", "message": 5}]}),
            "data.validation.errors.0.message",
        ),
        ({"requestId": REQUEST_ID}, "data"),
        ({"data": "push"}, "data"),
    ],
)
def test_bad_push_reports_are_refused(
    api: APIClient, company: Any, payload: dict[str, Any], field: str
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    before = snapshot(job)

    response = api.post(push_url(job.pk), payload, format="json")

    body = assert_problem(response, 400, "validation_error")
    assert any(f == field or f.startswith(field + ".") for f in error_fields(body)), body
    assert not PushResult.objects.exists()
    assert snapshot(job) == before


@pytest.mark.parametrize("text", ["[]", '"push"', "null", "42"])
def test_a_push_body_that_is_not_an_object_is_refused(
    api: APIClient, company: Any, text: str
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)

    response = post_text(api, job, text)

    assert_problem(response, 400, "validation_error")
    assert not PushResult.objects.exists()


def test_push_results_list_and_status_filter(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    assert post_text(api, job, SEED_001_FAILED_TEXT).status_code == 201
    ok = api.post(push_url(job.pk), success_payload(pushCommunicationId="push-ok"), format="json")
    assert ok.status_code == 201

    everything = api.get(push_url(job.pk))
    failed = api.get(push_url(job.pk), {"status": "failed"})
    succeeded = api.get(push_url(job.pk), {"status": "success"})

    assert everything.status_code == failed.status_code == succeeded.status_code == 200
    assert {"next", "previous", "results"} <= set(failed.json())
    assert [r["push_communication_id"] for r in everything.json()["results"]] == [
        PUSH_ID,
        "push-ok",
    ]
    [only_failed] = failed.json()["results"]
    assert set(only_failed) == PUSH_OUTPUT_KEYS
    assert only_failed["push_communication_id"] == PUSH_ID
    assert only_failed["validation_errors"] == [
        {"field": "currencyRef", "message": SEED_001_FAILED_VALIDATION}
    ]
    assert [r["push_communication_id"] for r in succeeded.json()["results"]] == ["push-ok"]


def test_push_results_list_refuses_an_unknown_status(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    body = assert_problem(api.get(push_url(job.pk), {"status": "meh"}), 400, "validation_error")
    assert error_fields(body) == {"status"}


def test_the_job_counts_its_push_results(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    assert api.get(job_url(job.pk)).json()["push_results"] == {"success": 0, "failed": 0}
    post_text(api, job, SEED_001_FAILED_TEXT)
    for n in range(2):
        api.post(push_url(job.pk), success_payload(pushCommunicationId=f"ok-{n}"), format="json")
    post_text(api, job, SEED_001_FAILED_TEXT)  # a repeat is not counted twice

    assert api.get(job_url(job.pk)).json()["push_results"] == {"success": 2, "failed": 1}
    assert api.get("/api/v1/jobs/").json()["results"][0]["push_results"] == {
        "success": 2,
        "failed": 1,
    }


def test_push_results_are_kept_after_the_job_finished(api: APIClient, company: Any) -> None:
    job = job_in_status(JobStatus.COMPLETED, company=company)

    response = post_text(api, job, SEED_001_FAILED_TEXT)

    assert response.status_code == 201
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.expires_at is None


def test_push_results_of_another_companys_job_are_not_found(
    other_api: APIClient, api: APIClient, company: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    assert post_text(api, job, SEED_001_FAILED_TEXT).status_code == 201

    posted = other_api.post(
        push_url(job.pk), success_payload(pushCommunicationId="intruder"), format="json"
    )
    listed = other_api.get(push_url(job.pk))

    assert_problem(posted, 404, "not_found")
    assert_problem(listed, 404, "not_found")
    assert list(PushResult.objects.values_list("push_communication_id", flat=True)) == [PUSH_ID]


def test_push_results_of_an_unknown_job_are_not_found(api: APIClient) -> None:
    assert_problem(post_text(api, Job(pk=uuid.uuid4()), SEED_001_FAILED_TEXT), 404, "not_found")


def test_push_results_need_a_token(company: Any) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    response = APIClient().post(
        push_url(job.pk), SEED_001_FAILED_TEXT, content_type="application/json"
    )
    assert_problem(response, 401, "not_authenticated")
    assert not PushResult.objects.exists()
