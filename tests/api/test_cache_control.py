"""API answers are never stored by a cache: they carry tokens (RFC 6749 5.1 asks no-store of a
token answer), endpoint secrets and signed report links, and a poll answered from a browser's
cache would show a status that moved on."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from jobs import services as jobs
from jobs.models import JobStatus
from reports import services as reports
from tests.factories import job_in_status
from tests.relay import run_relay

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_job(company: Any) -> Any:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    jobs.push_result_record(
        job_id=job.pk,
        data=jobs.PushResultData(push_communication_id="push-1", status="success"),
    )
    jobs.job_complete(job_id=job.pk)
    run_relay()
    assert reports.report_build(job_id=job.pk) is not None
    return job


def test_answers_carrying_a_signed_report_link_are_not_stored(api: APIClient, ready_job) -> None:
    poll = api.get(f"/api/v1/jobs/{ready_job.pk}/")
    assert poll.status_code == 200 and poll.json()["report"]["url"]
    assert poll["Cache-Control"] == "no-store"

    redirect = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")
    assert redirect.status_code == 302
    assert redirect["Cache-Control"] == "no-store"

    seed = api.post(
        "/services/rest/v1/export/job/status", {"jobCode": ready_job.code}, format="json"
    )
    assert seed.status_code == 200 and seed.json()["filePath"]
    assert seed["Cache-Control"] == "no-store"

    # the download keeps its own (private: it is the file itself)
    download = APIClient().get(redirect["Location"].removeprefix("http://127.0.0.1:8000"))
    assert download.status_code == 200
    assert download["Cache-Control"] == "private, no-store"


def test_token_answers_and_problems_are_not_stored(api_user: Any) -> None:
    token = APIClient().post(
        "/api/v1/auth/token/",
        {"username": api_user.username, "password": "pass-word-123"},
        format="json",
    )
    assert token.status_code == 200 and token.json()["access"]
    assert token["Cache-Control"] == "no-store"

    refused = APIClient().get("/api/v1/jobs/")
    assert refused.status_code == 401
    assert refused["Cache-Control"] == "no-store"

    charset = APIClient().post(
        "/api/v1/jobs/", b"{}", content_type="application/json; charset=latin-1"
    )
    assert charset.status_code == 415
    assert charset["Cache-Control"] == "no-store"

    # answered by the middleware before any view: the body limit and the NUL query
    too_big = APIClient().post(
        "/api/v1/jobs/", b"{}", content_type="application/json", CONTENT_LENGTH="99999999"
    )
    assert too_big.status_code == 413
    assert too_big["Cache-Control"] == "no-store"
    nul = APIClient().get("/api/v1/jobs/?q=%00")
    assert nul.status_code == 400
    assert nul["Cache-Control"] == "no-store"


def test_the_favicon_redirect_is_not_permanent(client: Any) -> None:
    """Browsers keep a 301 for good; the hashed file it would name goes with a later deploy."""
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith(".svg")
