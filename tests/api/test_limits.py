"""Issue 11, finding 2: what one company may store per request is bounded, with clear problems:
push result size, metadata size, and how much of an answer an Idempotency-Key keeps."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs.models import IdempotencyKey, Job, JobEvent, JobEventKind, PushResult

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


def push_body(n: int, *, errors: int = 0, message_size: int = 0) -> dict[str, Any]:
    return {
        "data": {
            "event": "push",
            "pushCommunicationId": f"push-{n}",
            "status": "failed" if errors else "success",
            "dataType": "invoices",
            "validation": {
                "errors": [
                    {"field": f"line{i}", "message": "x" * message_size} for i in range(errors)
                ]
            },
        },
        "requestId": f"req-{n}",
    }


@pytest.fixture
def job(api: APIClient) -> dict[str, Any]:
    response = api.post(JOBS, {"type": "export"}, format="json")
    assert response.status_code == 201
    return dict(response.json())


def test_a_900_kb_push_result_is_refused_with_413_and_nothing_is_stored(
    api: APIClient, job: dict[str, Any]
) -> None:
    body = push_body(1, errors=90, message_size=10_000)  # about 900 kB, under the 1 MiB body cap

    response = api.post(
        f"{JOBS}{job['id']}/push-results/", body, format="json", HTTP_IDEMPOTENCY_KEY="big-1"
    )

    assert response.status_code == 413
    problem = response.json()
    assert problem["code"] == "push_result_too_large"
    assert "65536" in problem["detail"]
    assert PushResult.objects.count() == 0
    assert not JobEvent.objects.filter(kind=JobEventKind.PUSH_RESULT).exists()
    assert Job.objects.get(pk=job["id"]).push_failed_count == 0
    # the refusal is what the key keeps: a few hundred bytes, not the 900 kB
    stored = IdempotencyKey.objects.get(key="big-1")
    assert stored.response_status == 413 and len(str(stored.response_body)) < 1000


def test_a_push_result_under_the_limit_is_recorded(
    settings: Any, api: APIClient, job: dict[str, Any]
) -> None:
    body = push_body(2, errors=5, message_size=1000)
    response = api.post(f"{JOBS}{job['id']}/push-results/", body, format="json")
    assert response.status_code == 201
    settings.JOBTRAIL_MAX_PUSH_RESULT_BYTES = 2000  # configurable
    refused = api.post(
        f"{JOBS}{job['id']}/push-results/", push_body(3, errors=5, message_size=1000), format="json"
    )
    assert refused.status_code == 413 and "2000" in refused.json()["detail"]
    assert PushResult.objects.count() == 1


def test_metadata_size_is_configurable(settings: Any, api: APIClient) -> None:
    settings.JOBTRAIL_MAX_METADATA_BYTES = 100
    response = api.post(JOBS, {"type": "export", "metadata": {"x": "y" * 200}}, format="json")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "metadata" and "100 bytes" in error["message"]
    assert Job.objects.count() == 0


def test_an_answer_larger_than_the_kept_size_is_not_stored_twice(
    settings: Any, api: APIClient
) -> None:
    """The job's metadata is stored with the job; its answer is not copied under the key when
    it passes JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES. A replay still applies nothing twice and
    answers the first status and Location, with a note instead of the body."""
    settings.JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES = 2000
    body = {"type": "export", "metadata": {"blob": "z" * 5000}}

    first = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="large-1")
    replay = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="large-1")

    assert first.status_code == 201 and first.json()["metadata"] == body["metadata"]
    stored = IdempotencyKey.objects.get(key="large-1")
    assert stored.response_body is None
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay["Location"] == first["Location"]
    assert "too large to keep" in replay.json()["detail"]
    assert "X-Jobtrail-Body-Not-Kept" not in replay
    assert Job.objects.count() == 1
    # a different body under the same key is still refused
    other = api.post(JOBS, {"type": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="large-1")
    assert other.status_code == 422


def test_a_small_answer_is_still_replayed_in_full(settings: Any, api: APIClient) -> None:
    first = api.post(JOBS, {"type": "export"}, format="json", HTTP_IDEMPOTENCY_KEY="small-1")
    replay = api.post(JOBS, {"type": "export"}, format="json", HTTP_IDEMPOTENCY_KEY="small-1")
    assert replay.json() == first.json()
