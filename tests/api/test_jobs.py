"""The v1 jobs endpoints: create, list, detail, progress, events, cancel — and tenancy."""

import base64
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job, JobEvent, JobStatus, PushResult
from tests.factories import CompanyFactory, JobFactory, job_in_status

pytestmark = pytest.mark.django_db

JOB_KEYS = {
    "id",
    "code",
    "type",
    "company_id",
    "status",
    "failure_reason",
    "message",
    "total_records",
    "effected_records",
    "push_results",
    "start_time",
    "end_time",
    "expires_at",
    "report",
    "metadata",
    "created_at",
    "updated_at",
}


def _create(api: APIClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/jobs/", {"type": "export", **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_job_answers_201_with_location_and_representation(api: APIClient, company) -> None:
    response = api.post(
        "/api/v1/jobs/",
        {
            "type": "expense_export",
            "code": "EXP-2026.11_a",
            "total_records": 773,
            "expires_after": 120,
            "metadata": {"batch": "2026-11", "nested": {"ok": True}},
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == JOB_KEYS
    assert response["Location"].endswith(f"/api/v1/jobs/{body['id']}/")
    assert body["code"] == "EXP-2026.11_a"
    assert body["company_id"] == str(company.pk)
    assert body["status"] == "pending"
    assert body["failure_reason"] is None
    assert body["push_results"] == {"success": 0, "failed": 0}
    assert body["report"] == {"status": "none", "url": None}
    assert body["metadata"] == {"batch": "2026-11", "nested": {"ok": True}}
    assert body["created_at"].endswith("Z")
    job = Job.objects.get(pk=body["id"])
    assert (job.total_records, job.expires_after, job.company_id) == (773, 120, company.pk)
    assert list(job.events.values_list("status", "source")) == [("created", "api")]


def test_create_generates_a_code_and_refuses_a_taken_one(api: APIClient) -> None:
    generated = _create(api)["code"]
    assert generated.startswith("JOB-")
    response = api.post("/api/v1/jobs/", {"type": "export", "code": generated}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "job_code_taken"
    assert Job.objects.count() == 1


def test_same_code_in_two_companies_is_fine(api: APIClient, other_api: APIClient) -> None:
    _create(api, code="EXPORT-1")
    _create(other_api, code="EXPORT-1")
    assert Job.objects.filter(code="EXPORT-1").count() == 2


def test_detail_carries_retry_after_until_finished(api: APIClient, settings) -> None:
    settings.JOBTRAIL_POLL_INTERVAL = 17
    job = _create(api)
    response = api.get(f"/api/v1/jobs/{job['id']}/")
    assert response.status_code == 200
    assert response["Retry-After"] == "17"
    assert set(response.json()) == JOB_KEYS

    api.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "completed"}, format="json")
    finished = api.get(f"/api/v1/jobs/{job['id']}/")
    assert finished.json()["status"] == "completed"
    assert not finished.has_header("Retry-After")


def test_full_lifecycle_through_events(api: APIClient) -> None:
    job = _create(api, total_records=3)
    url = f"/api/v1/jobs/{job['id']}/events/"

    started = api.post(url, {"status": "started", "message": "go"}, format="json")
    assert started.status_code == 201
    assert started.json()["sequence"] == 2
    assert started.json()["job"]["status"] == "processing"
    assert started.json()["job"]["start_time"] is not None

    progress = api.patch(
        f"/api/v1/jobs/{job['id']}/",
        {"effected_records": 2, "message": "2/3", "metadata": {"step": 2}},
        format="json",
    )
    assert progress.status_code == 200
    assert (progress.json()["effected_records"], progress.json()["message"]) == (2, "2/3")
    assert progress.json()["metadata"] == {"step": 2}

    done = api.post(url, {"status": "completed_with_errors", "effected_records": 2}, format="json")
    assert done.status_code == 201
    assert done.json()["job"]["status"] == "completed_with_errors"
    assert done.json()["job"]["end_time"] is not None

    timeline = api.get(url).json()["results"]
    assert [(e["sequence"], e["status"]) for e in timeline] == [
        (1, "created"),
        (2, "started"),
        (3, "progress"),
        (4, "completed_with_errors"),
    ]
    assert timeline[2]["data"] == {"effected_records": 2, "metadata": {"step": 2}}
    assert all(e["source"] == "api" and e["actor"] for e in timeline)


def test_failed_event_needs_a_reason(api: APIClient) -> None:
    job = _create(api)
    url = f"/api/v1/jobs/{job['id']}/events/"
    missing = api.post(url, {"status": "failed"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["code"] == "invalid_failure_reason"
    assert missing.json()["errors"][0]["field"] == "failure_reason"

    refused = api.post(url, {"status": "started", "failure_reason": "job_expired"}, format="json")
    assert refused.status_code == 400

    failed = api.post(
        url, {"status": "failed", "failure_reason": "accounting_system_timeout"}, format="json"
    )
    assert failed.status_code == 201
    assert failed.json()["job"]["failure_reason"] == "accounting_system_timeout"


@pytest.mark.parametrize(
    "terminal", [JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED]
)
def test_finished_jobs_answer_409(api: APIClient, company, terminal: JobStatus) -> None:
    job = job_in_status(terminal, company=company)
    events_before = JobEvent.objects.filter(job=job).count()
    for method, url, body in [
        ("post", f"/api/v1/jobs/{job.pk}/events/", {"status": "started"}),
        ("post", f"/api/v1/jobs/{job.pk}/events/", {"status": "completed"}),
        ("patch", f"/api/v1/jobs/{job.pk}/", {"message": "late"}),
        ("post", f"/api/v1/jobs/{job.pk}/cancel/", {}),
    ]:
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code == 409, (url, body)
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "job_finished"
    job.refresh_from_db()
    assert job.status == terminal
    assert JobEvent.objects.filter(job=job).count() == events_before


def test_started_twice_is_an_invalid_transition(api: APIClient) -> None:
    job = _create(api)
    url = f"/api/v1/jobs/{job['id']}/events/"
    api.post(url, {"status": "started"}, format="json")
    again = api.post(url, {"status": "started"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"


def test_cancel(api: APIClient, api_user) -> None:
    job = _create(api)
    response = api.post(
        f"/api/v1/jobs/{job['id']}/cancel/", {"message": "customer asked"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["failure_reason"]) == ("failed", "canceled_by_user")
    event = JobEvent.objects.filter(job_id=job["id"]).order_by("sequence").last()
    assert event is not None
    assert (event.status, event.source, event.actor, event.message) == (
        "failed",
        "api",
        api_user,
        "customer asked",
    )


def test_cancel_without_body(api: APIClient) -> None:
    job = _create(api)
    response = api.post(f"/api/v1/jobs/{job['id']}/cancel/")
    assert response.status_code == 200
    assert response.json()["failure_reason"] == "canceled_by_user"


@pytest.mark.parametrize("finish", ["completed", "failed"])
def test_cancelling_a_finished_job_says_it_is_finished(api: APIClient, finish: str) -> None:
    job = _create(api)
    url = f"/api/v1/jobs/{job['id']}/"
    api.post(url + "events/", {"status": "started"}, format="json")
    ending = {"status": finish}
    if finish == "failed":
        ending["failure_reason"] = "service_unreachable"
    assert api.post(url + "events/", ending, format="json").status_code == 201
    before = JobEvent.objects.filter(job_id=job["id"]).count()

    response = api.post(url + "cancel/", {"message": "too late"}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "job_finished"
    assert body["detail"] == (
        f"Job {job['code']} is already finished ({finish}); it cannot be cancelled."
    )
    assert "cannot become" not in body["detail"]
    assert JobEvent.objects.filter(job_id=job["id"]).count() == before
    assert api.get(url).json()["status"] == finish


def test_patch_validates_counts_against_stored_values(api: APIClient) -> None:
    job = _create(api, total_records=5)
    response = api.patch(f"/api/v1/jobs/{job['id']}/", {"effected_records": 6}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "effected_records"
    empty = api.patch(f"/api/v1/jobs/{job['id']}/", {}, format="json")
    assert empty.status_code == 400
    assert JobEvent.objects.filter(job_id=job["id"]).count() == 1


# --- tenancy ----------------------------------------------------------------------------------


def test_another_companys_job_is_not_found_everywhere(api: APIClient, other_api: APIClient) -> None:
    job = _create(api)
    before = Job.objects.values().get(pk=job["id"])
    jid = job["id"]
    push = {"data": {"pushCommunicationId": "p1", "status": "success"}}
    calls = [
        ("get", f"/api/v1/jobs/{jid}/", None),
        ("patch", f"/api/v1/jobs/{jid}/", {"message": "x"}),
        ("get", f"/api/v1/jobs/{jid}/events/", None),
        ("post", f"/api/v1/jobs/{jid}/events/", {"status": "started"}),
        ("post", f"/api/v1/jobs/{jid}/cancel/", {}),
        ("get", f"/api/v1/jobs/{jid}/push-results/", None),
        ("post", f"/api/v1/jobs/{jid}/push-results/", push),
        ("get", f"/engine/api/api-jobs/{jid}", None),
    ]
    for method, url, body in calls:
        response = getattr(other_api, method)(url, body, format="json")
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "not_found"
    assert Job.objects.values().get(pk=jid) == before
    assert other_api.get("/api/v1/jobs/").json()["results"] == []
    assert other_api.get("/api/v1/jobs/", {"code": job["code"]}).json()["results"] == []


@pytest.mark.parametrize("spell", [str.upper, str.lower], ids=["upper-case", "lower-case"])
def test_a_job_id_is_read_in_either_letter_case(
    api: APIClient, other_api: APIClient, spell: Any
) -> None:
    """RFC 9562 compares UUIDs case-insensitively; Swift's uuidString is upper case."""
    job = _create(api)
    jid = spell(job["id"])
    reads = [
        f"/api/v1/jobs/{jid}/",
        f"/api/v1/jobs/{jid}/events/",
        f"/api/v1/jobs/{jid}/push-results/",
        f"/engine/api/api-jobs/{jid}",
    ]
    for url in reads:
        response = api.get(url)
        assert response.status_code == 200, url
        assert other_api.get(url).status_code == 404, url  # still another company's job
    assert api.get(f"/api/v1/jobs/{jid}/").json()["id"] == job["id"]
    assert api.get(f"/engine/api/api-jobs/{jid}").json()["id"] == job["id"]
    started = api.post(f"/api/v1/jobs/{jid}/events/", {"status": "started"}, format="json")
    assert started.status_code == 201
    assert Job.objects.get(pk=job["id"]).status == JobStatus.PROCESSING
    # the links Jobtrail hands out stay lower case
    assert reverse("api-v1:job-detail", kwargs={"job_id": jid}) == f"/api/v1/jobs/{job['id']}/"


# --- list, filters, pagination ----------------------------------------------------------------


def test_list_filters(api: APIClient, company) -> None:
    pending = JobFactory(company=company, type="export", code="A-1")
    processing = job_in_status(JobStatus.PROCESSING, company=company, type="bulk", code="B-1")
    failed = job_in_status(JobStatus.FAILED, company=company, type="export", code="C-1")

    def ids(**params: str) -> set[str]:
        response = api.get("/api/v1/jobs/", params)
        assert response.status_code == 200, response.content
        return {j["id"] for j in response.json()["results"]}

    assert ids() == {str(pending.pk), str(processing.pk), str(failed.pk)}
    assert ids(status="processing") == {str(processing.pk)}
    assert ids(type="export") == {str(pending.pk), str(failed.pk)}
    assert ids(code="C-1") == {str(failed.pk)}
    Job.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=3))
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(created_after=cutoff) == {str(processing.pk), str(failed.pk)}
    assert ids(created_before=cutoff) == {str(pending.pk)}


def test_cursor_pagination_walks_every_job_once_newest_first(api: APIClient, company) -> None:
    jobs = [JobFactory(company=company) for _ in range(7)]
    seen: list[str] = []
    url: str | None = "/api/v1/jobs/?page_size=3"
    pages = 0
    while url:
        body = api.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 3
        seen.extend(j["id"] for j in body["results"])
        url = body["next"]
        pages += 1
    assert pages == 3
    expected = sorted(jobs, key=lambda j: (j.created_at, j.pk), reverse=True)
    assert seen == [str(j.pk) for j in expected]


def test_push_results_page_in_arrival_order_and_the_cursor_tells_no_id(
    api: APIClient, company
) -> None:
    """Push result ids count every company's results: a cursor holding one told a client how
    many other companies recorded between two of its own. The list walks a job's results in
    the order they came, and its cursor holds a time."""
    job = job_in_status(JobStatus.PROCESSING, company=company)
    other = job_in_status(JobStatus.PROCESSING, company=CompanyFactory(name="Other"))

    def record(target: Job, push_id: str) -> None:
        services.push_result_record(
            job_id=target.pk,
            data=services.PushResultData(push_communication_id=push_id, status="success"),
        )

    for number in range(5):
        record(job, f"mine-{number}")
        record(other, f"theirs-{number}")
    seen: list[str] = []
    url: str | None = f"/api/v1/jobs/{job.pk}/push-results/?page_size=2"
    while url:
        body = api.get(url).json()
        seen.extend(result["push_communication_id"] for result in body["results"])
        url = body["next"]
        if url:
            cursor = parse_qs(urlsplit(url).query)["cursor"][0]
            position = parse_qs(base64.b64decode(cursor).decode())["p"][0]
            last = PushResult.objects.get(job=job, push_communication_id=seen[-1])
            assert position != str(last.pk)
            assert datetime.fromisoformat(position) == last.received_at
    assert seen == [f"mine-{number}" for number in range(5)]


def test_page_size_up_to_500_is_taken(api: APIClient, company) -> None:
    for _ in range(3):
        JobFactory(company=company)
    body = api.get("/api/v1/jobs/?page_size=500").json()
    assert len(body["results"]) == 3
    assert len(api.get("/api/v1/jobs/?page_size=2").json()["results"]) == 2


@pytest.mark.parametrize("page_size", ["0", "501", "100000", "-1", "abc", "2.5", "null", ""])
def test_a_page_size_outside_1_to_500_is_refused_as_the_document_says(
    api: APIClient, company, page_size: str
) -> None:
    """DRF would quietly use the default (or the cap); the document says 1 to 500."""
    JobFactory(company=company)
    for path in ("/api/v1/jobs/", "/api/v1/webhook-deliveries/"):
        response = api.get(path, {"page_size": page_size})
        assert response.status_code == 400, (path, page_size)
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["errors"] == [
            {"field": "page_size", "message": "Must be a whole number from 1 to 500."}
        ]


@pytest.mark.parametrize("query", ["status=", "type=", "code=", "status=null", "created_after="])
def test_an_empty_or_null_filter_is_refused_not_ignored(
    api: APIClient, company, query: str
) -> None:
    JobFactory(company=company)
    response = api.get(f"/api/v1/jobs/?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == query.split("=")[0]


def test_an_integral_float_is_an_integer_as_json_schema_says(api: APIClient) -> None:
    response = api.post("/api/v1/jobs/", {"type": "export", "total_records": 5.0}, format="json")
    assert response.status_code == 201
    assert response.json()["total_records"] == 5


def test_push_counts_in_list(api: APIClient, company) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    for n, status in enumerate(["success", "success", "failed"]):
        services.push_result_record(
            job_id=job.pk, data=services.PushResultData(push_communication_id=str(n), status=status)
        )
    listed = api.get("/api/v1/jobs/").json()["results"][0]
    assert listed["push_results"] == {"success": 2, "failed": 1}


def test_list_query_count_does_not_grow_with_rows(
    api: APIClient, company, django_assert_max_num_queries
) -> None:
    for _ in range(30):
        JobFactory(company=company)
    with django_assert_max_num_queries(6):
        response = api.get("/api/v1/jobs/")
    assert len(response.json()["results"]) == 30
