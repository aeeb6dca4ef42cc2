"""``Idempotency-Key`` on POST: replays, conflicts, per-user keys, expiry and purge."""

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.idempotency import idempotency_keys_purge
from jobs.models import Company, IdempotencyKey, Job, JobEvent, JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/v1/jobs/"
PROBLEM = "application/problem+json"
REPLAYED = "Idempotent-Replayed"


def post(client: APIClient, url: str, body: Any, key: str | None, *, raw: bool = False) -> Any:
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    data = body if raw else json.dumps(body)
    return client.post(url, data, content_type="application/json", **extra)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    return body


def assert_same_answer(first: Any, second: Any) -> None:
    assert second.status_code == first.status_code
    assert second.json() == first.json()
    assert second["Content-Type"] == first["Content-Type"]
    for header in ("Location", "Retry-After"):
        assert second.get(header) == first.get(header), header
    assert not first.has_header(REPLAYED)
    assert second[REPLAYED] == "true"


@pytest.fixture
def job(company: Company) -> Job:
    return JobFactory(company=company)


# --- replays ----------------------------------------------------------------------------------


def test_same_key_and_body_replay_the_first_answer(api: APIClient) -> None:
    body = {"type": "export", "total_records": 773, "metadata": {"batch": "2026-11"}}

    first = post(api, JOBS_URL, body, "create-1")
    second = post(api, JOBS_URL, body, "create-1")

    assert first.status_code == 201
    assert first["Location"].endswith(f"{JOBS_URL}{first.json()['id']}/")
    assert_same_answer(first, second)
    assert Job.objects.count() == 1
    assert JobEvent.objects.count() == 1


def test_replay_answers_the_first_result_even_after_the_job_moved_on(api: APIClient) -> None:
    first = post(api, JOBS_URL, {"type": "export"}, "create-1")
    job_id = first.json()["id"]
    assert post(api, f"{JOBS_URL}{job_id}/events/", {"status": "started"}, None).status_code == 201

    second = post(api, JOBS_URL, {"type": "export"}, "create-1")

    assert_same_answer(first, second)
    assert second.json()["status"] == "pending"
    assert Job.objects.count() == 1


def test_key_order_and_whitespace_in_the_body_do_not_matter(api: APIClient) -> None:
    first = post(
        api, JOBS_URL, '{"type": "export", "total_records": 5, "code": "EXP-1"}', "k", raw=True
    )
    second = post(
        api, JOBS_URL, '{\n  "code":"EXP-1",\n  "total_records":5,"type":"export"}', "k", raw=True
    )

    assert first.status_code == 201
    assert_same_answer(first, second)
    assert Job.objects.count() == 1


def test_without_a_key_every_post_creates_a_job(api: APIClient) -> None:
    post(api, JOBS_URL, {"type": "export"}, None)
    response = post(api, JOBS_URL, {"type": "export"}, None)

    assert response.status_code == 201
    assert not response.has_header(REPLAYED)
    assert Job.objects.count() == 2


def test_a_new_key_with_the_same_body_creates_another_job(api: APIClient) -> None:
    post(api, JOBS_URL, {"type": "export"}, "one")
    response = post(api, JOBS_URL, {"type": "export"}, "two")

    assert response.status_code == 201
    assert not response.has_header(REPLAYED)
    assert Job.objects.count() == 2


# --- conflicts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other_body",
    [
        {"type": "import"},
        {"type": "export", "total_records": 1},
        {"type": "export", "metadata": {}},
    ],
)
def test_same_key_with_another_body_is_422(api: APIClient, other_body: dict[str, Any]) -> None:
    first = post(api, JOBS_URL, {"type": "export"}, "reused")

    response = post(api, JOBS_URL, other_body, "reused")

    assert_problem(response, 422, "idempotency_key_reused")
    assert not response.has_header(REPLAYED)
    assert list(Job.objects.values_list("id", flat=True)) == [uuid.UUID(first.json()["id"])]


def test_same_key_on_another_endpoint_is_422(api: APIClient) -> None:
    created = post(api, JOBS_URL, {"type": "export"}, "shared-key")
    job_id = created.json()["id"]
    events_before = JobEvent.objects.count()

    response = post(api, f"{JOBS_URL}{job_id}/events/", {"status": "started"}, "shared-key")

    assert_problem(response, 422, "idempotency_key_reused")
    assert JobEvent.objects.count() == events_before
    assert Job.objects.get().status == JobStatus.PENDING


def test_same_key_and_body_on_another_jobs_events_is_422(api: APIClient, company: Company) -> None:
    first_job, second_job = JobFactory(company=company), JobFactory(company=company)
    body = {"status": "started"}
    assert post(api, f"{JOBS_URL}{first_job.pk}/events/", body, "k").status_code == 201

    response = post(api, f"{JOBS_URL}{second_job.pk}/events/", body, "k")

    assert_problem(response, 422, "idempotency_key_reused")
    second_job.refresh_from_db()
    assert second_job.status == JobStatus.PENDING


def test_a_retry_spelling_the_job_id_in_upper_case_is_the_same_request(
    api: APIClient, job: Job
) -> None:
    """Ids in paths are read in either letter case: the key's request is the same one."""
    body = {"status": "started"}
    first = post(api, f"{JOBS_URL}{job.pk}/events/", body, "k")
    assert first.status_code == 201

    again = post(api, f"{JOBS_URL}{str(job.pk).upper()}/events/", body, "k")

    assert again.status_code == 201, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert JobEvent.objects.filter(job=job).count() == 2  # created, started: once


def test_a_key_still_being_answered_is_409(api: APIClient) -> None:
    post(api, JOBS_URL, {"type": "export"}, "slow")
    IdempotencyKey.objects.filter(key="slow").update(
        response_status=None, response_body=None, response_headers={}
    )

    response = post(api, JOBS_URL, {"type": "export"}, "slow")

    assert_problem(response, 409, "idempotency_request_in_progress")
    assert Job.objects.count() == 1


# --- finished jobs and error answers ----------------------------------------------------------


def test_completed_event_replayed_answers_201_while_a_new_key_gets_409(
    api: APIClient, job: Job
) -> None:
    url = f"{JOBS_URL}{job.pk}/events/"
    body = {"status": "completed", "total_records": 3, "effected_records": 3}
    first = post(api, url, body, "complete-1")
    assert first.status_code == 201
    assert first.json()["job"]["status"] == "completed"
    events = JobEvent.objects.filter(job=job).count()

    replay = post(api, url, body, "complete-1")
    fresh = post(api, url, body, "complete-2")

    assert_same_answer(first, replay)
    assert_problem(fresh, 409, "job_finished")
    assert JobEvent.objects.filter(job=job).count() == events


def test_cancel_replayed_answers_200_while_a_new_key_gets_409(api: APIClient, job: Job) -> None:
    url = f"{JOBS_URL}{job.pk}/cancel/"
    first = post(api, url, {"message": "stop"}, "cancel-1")
    assert first.status_code == 200
    assert first.json()["failure_reason"] == "canceled_by_user"

    assert_same_answer(first, post(api, url, {"message": "stop"}, "cancel-1"))
    assert_problem(post(api, url, {"message": "stop"}, "cancel-2"), 409, "job_finished")


def test_a_4xx_first_answer_is_replayed(api: APIClient) -> None:
    first = post(api, JOBS_URL, {"type": "not a slug"}, "bad-1")
    assert_problem(first, 400, "validation_error")

    second = post(api, JOBS_URL, {"type": "not a slug"}, "bad-1")

    assert_same_answer(first, second)
    assert second["Content-Type"].startswith(PROBLEM)
    assert Job.objects.count() == 0


def test_a_4xx_answer_binds_the_key_to_its_body(api: APIClient) -> None:
    assert post(api, JOBS_URL, {"type": "not a slug"}, "bad-1").status_code == 400

    fixed = post(api, JOBS_URL, {"type": "export"}, "bad-1")

    assert_problem(fixed, 422, "idempotency_key_reused")
    assert post(api, JOBS_URL, {"type": "export"}, "bad-2").status_code == 201


def test_a_409_first_answer_is_replayed(api: APIClient, company: Company) -> None:
    JobFactory(company=company, code="EXP-1")
    first = post(api, JOBS_URL, {"type": "export", "code": "EXP-1"}, "dup")
    assert_problem(first, 409, "job_code_taken")

    assert_same_answer(first, post(api, JOBS_URL, {"type": "export", "code": "EXP-1"}, "dup"))
    assert Job.objects.count() == 1


def test_malformed_json_first_answer_is_replayed(api: APIClient) -> None:
    first = post(api, JOBS_URL, '{"type": ', "broken", raw=True)
    assert_problem(first, 400, "malformed_json")

    assert_same_answer(first, post(api, JOBS_URL, '{"type": ', "broken", raw=True))


def test_a_404_first_answer_is_replayed(api: APIClient) -> None:
    url = f"{JOBS_URL}00000000-0000-0000-0000-000000000000/events/"
    first = post(api, url, {"status": "started"}, "missing")
    assert_problem(first, 404, "not_found")

    assert_same_answer(first, post(api, url, {"status": "started"}, "missing"))


def test_a_request_that_crashed_does_not_leave_its_key_stuck(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5xx is not stored: retrying with the same key runs the request again.

    The body is valid (the strict parser accepts it); the service then crashes inside the
    handler, so the key-release path on a 5xx runs.
    """
    from jobs import services

    calls: list[dict[str, Any]] = []

    def crash(**kwargs: Any) -> Job:
        calls.append(kwargs)
        raise RuntimeError("the service crashed")

    real_job_create = services.job_create
    monkeypatch.setattr(services, "job_create", crash)
    api.raise_request_exception = False
    body = {"type": "export", "total_records": 3}

    crashed = post(api, JOBS_URL, body, "crash")

    assert crashed.status_code == 500
    assert len(calls) == 1  # the handler ran: the crash is past the parser
    assert not IdempotencyKey.objects.filter(key="crash").exists()
    assert Job.objects.count() == 0

    monkeypatch.setattr(services, "job_create", real_job_create)
    retry = post(api, JOBS_URL, body, "crash")

    assert retry.status_code == 201, retry.content[:300]
    assert not retry.has_header(REPLAYED)  # it ran again, it was not a replay
    assert Job.objects.count() == 1
    assert IdempotencyKey.objects.get(key="crash").response_status == 201
    assert_same_answer(retry, post(api, JOBS_URL, body, "crash"))


def test_a_request_answered_503_does_not_leave_its_key_stuck(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database outage inside the handler answers 503 + Retry-After and stores no answer."""
    from django.db import OperationalError

    from jobs import services

    def outage(**kwargs: Any) -> Job:
        raise OperationalError("connection lost")

    real_job_create = services.job_create
    monkeypatch.setattr(services, "job_create", outage)
    body = {"type": "export"}

    unavailable = post(api, JOBS_URL, body, "outage")

    assert_problem(unavailable, 503, "database_unavailable")
    assert unavailable["Retry-After"]
    assert not IdempotencyKey.objects.filter(key="outage").exists()

    monkeypatch.setattr(services, "job_create", real_job_create)
    retry = post(api, JOBS_URL, body, "outage")

    assert retry.status_code == 201
    assert not retry.has_header(REPLAYED)
    assert Job.objects.count() == 1


# --- keys are per user ------------------------------------------------------------------------


def test_another_user_may_use_the_same_key(api: APIClient, other_api: APIClient) -> None:
    mine = post(api, JOBS_URL, {"type": "export"}, "common-key")
    theirs = post(other_api, JOBS_URL, {"type": "export"}, "common-key")

    assert mine.status_code == theirs.status_code == 201
    assert not theirs.has_header(REPLAYED)
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["company_id"] != mine.json()["company_id"]
    assert Job.objects.count() == 2
    assert_same_answer(mine, post(api, JOBS_URL, {"type": "export"}, "common-key"))


def test_another_user_may_use_the_key_with_another_body(
    api: APIClient, other_api: APIClient
) -> None:
    post(api, JOBS_URL, {"type": "export"}, "common-key")

    response = post(other_api, JOBS_URL, {"type": "import"}, "common-key")

    assert response.status_code == 201
    assert response.json()["type"] == "import"


# --- key format -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["k" * 256, "k" * 1000, "   "])
def test_invalid_key_is_400(api: APIClient, key: str) -> None:
    response = post(api, JOBS_URL, {"type": "export"}, key)

    body = assert_problem(response, 400, "invalid_idempotency_key")
    assert "255" in body["detail"]
    assert Job.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_key_of_255_chars_is_accepted(api: APIClient) -> None:
    key = "k" * 255
    first = post(api, JOBS_URL, {"type": "export"}, key)

    assert first.status_code == 201
    assert_same_answer(first, post(api, JOBS_URL, {"type": "export"}, key))


# --- expiry and purge -------------------------------------------------------------------------


def _age(key: str, seconds: float) -> None:
    IdempotencyKey.objects.filter(key=key).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_expired_key_is_treated_as_new(settings: Any, api: APIClient) -> None:
    ttl = settings.JOBTRAIL_IDEMPOTENCY_TTL
    first = post(api, JOBS_URL, {"type": "export"}, "old")
    _age("old", ttl + 1)

    again = post(api, JOBS_URL, {"type": "export"}, "old")

    assert again.status_code == 201
    assert not again.has_header(REPLAYED)
    assert again.json()["id"] != first.json()["id"]
    assert Job.objects.count() == 2
    assert_same_answer(again, post(api, JOBS_URL, {"type": "export"}, "old"))


def test_expired_key_may_carry_another_body(settings: Any, api: APIClient) -> None:
    post(api, JOBS_URL, {"type": "export"}, "old")
    _age("old", settings.JOBTRAIL_IDEMPOTENCY_TTL + 1)

    response = post(api, JOBS_URL, {"type": "import"}, "old")

    assert response.status_code == 201
    assert response.json()["type"] == "import"


def test_key_within_the_ttl_still_replays(settings: Any, api: APIClient) -> None:
    first = post(api, JOBS_URL, {"type": "export"}, "recent")
    _age("recent", settings.JOBTRAIL_IDEMPOTENCY_TTL - 60)

    assert_same_answer(first, post(api, JOBS_URL, {"type": "export"}, "recent"))
    assert_problem(post(api, JOBS_URL, {"type": "import"}, "recent"), 422, "idempotency_key_reused")


def test_ttl_setting_is_honoured(settings: Any, api: APIClient) -> None:
    settings.JOBTRAIL_IDEMPOTENCY_TTL = 60
    post(api, JOBS_URL, {"type": "export"}, "short")
    _age("short", 61)

    assert post(api, JOBS_URL, {"type": "import"}, "short").status_code == 201


def test_purge_deletes_only_old_keys(settings: Any, api: APIClient, other_api: APIClient) -> None:
    ttl = settings.JOBTRAIL_IDEMPOTENCY_TTL
    for key in ("old-1", "old-2", "edge", "fresh"):
        assert post(api, JOBS_URL, {"type": "export"}, key).status_code == 201
    assert post(other_api, JOBS_URL, {"type": "export"}, "old-3").status_code == 201
    _age("old-1", ttl + 1)
    _age("old-2", ttl * 10)
    _age("old-3", ttl + 3600)
    _age("edge", ttl - 60)

    purged = idempotency_keys_purge(budget=60)

    assert purged == (3, 0, True)
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"edge", "fresh"}
    assert Job.objects.count() == 5
    assert idempotency_keys_purge(budget=60) == (0, 0, True)


def test_a_purge_whose_budget_ran_out_queues_the_next_run(
    settings: Any, api: APIClient, one_batch_per_run: list[str]
) -> None:
    from jobs.tasks import purge_idempotency_keys

    published = one_batch_per_run
    for key in ("old-1", "old-2", "old-3", "fresh"):
        assert post(api, JOBS_URL, {"type": "export"}, key).status_code == 201
        if key != "fresh":
            _age(key, settings.JOBTRAIL_IDEMPOTENCY_TTL + 60)
    published.clear()  # what the job creations woke

    assert purge_idempotency_keys() == 2  # the oldest two, one batch
    assert published == ["jobs.purge_idempotency_keys"]
    assert purge_idempotency_keys() == 1  # the queued run: the rest, done
    assert published == ["jobs.purge_idempotency_keys"]
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"fresh"}


def test_a_key_whose_first_request_never_answered_is_freed(api, company) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import IdempotencyKey

    first = api.post("/api/v1/jobs/", {"type": "export"}, format="json", HTTP_IDEMPOTENCY_KEY="k-x")
    assert first.status_code == 201
    IdempotencyKey.objects.filter(key="k-x").update(
        response_status=None, created_at=timezone.now() - timedelta(minutes=5)
    )  # as if the process died before answering
    retry = api.post("/api/v1/jobs/", {"type": "export"}, format="json", HTTP_IDEMPOTENCY_KEY="k-x")
    assert retry.status_code == 201


# --- concurrent duplicates (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["create", "event"])
def test_concurrent_requests_with_one_key_commit_once_and_answer_alike(
    company: Company, path: str
) -> None:
    """The key's INSERT is the last statement of each request's transaction: the losers wait on
    the unique index, roll their own work back and replay the winner's answer."""
    import threading

    from django.db import connection

    from tests.conftest import bearer_client
    from tests.factories import ApiClientFactory

    user = ApiClientFactory(company=company)
    job = JobFactory(company=company)
    url, body = (
        (JOBS_URL, {"type": "export"})
        if path == "create"
        else (f"{JOBS_URL}{job.pk}/events/", {"status": "started"})
    )
    threads_count = 6
    barrier = threading.Barrier(threads_count)
    answers: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        client = bearer_client(user)
        try:
            barrier.wait()
            response = post(client, url, body, "same-key")
            with lock:
                answers.append(response)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not errors, errors
    assert len(answers) == threads_count
    assert {a.status_code for a in answers} == {201}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert sum(1 for a in answers if not a.has_header(REPLAYED)) == 1
    if path == "create":
        assert Job.objects.filter(company=company).count() == 2  # the fixture's job and one
    else:
        assert JobEvent.objects.filter(job=job, status="started").count() == 1
    assert IdempotencyKey.objects.filter(key="same-key").count() == 1


def test_a_user_moved_to_another_company_gets_no_replay_of_the_first_companys_answer(
    api: APIClient, api_user: Any
) -> None:
    from jobs.models import CompanyMember
    from tests.conftest import bearer_client
    from tests.factories import CompanyFactory

    first = post(api, JOBS_URL, {"type": "export", "metadata": {"secret": "A's"}}, "k1")
    assert first.status_code == 201
    CompanyMember.objects.filter(user=api_user).update(company=CompanyFactory(name="B"))
    in_b = bearer_client(type(api_user).objects.get(pk=api_user.pk))  # a token of B

    again = post(in_b, JOBS_URL, {"type": "export", "metadata": {"secret": "A's"}}, "k1")

    assert_problem(again, 422, "idempotency_key_reused")
    assert "A's" not in again.content.decode()
