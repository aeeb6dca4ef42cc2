"""Odd input to the console's searches, filters and forms: a clear answer, never a 500."""

from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from jobs.models import JobStatus
from ops.models import StaffTimeZone
from tests.factories import CompanyFactory, JobFactory, job_in_status
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

JOBS = "/admin/jobs/job/"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_a_metadata_search_for_a_number_json_has_not_is_a_string_search(
    staff: Client, value: str
) -> None:
    listed = JobFactory(metadata={"k": value})
    JobFactory(metadata={"k": 1})

    response = staff.get(JOBS, {"q": f"meta:k={value}"})

    assert response.status_code == 200
    assert listed.code in response.content.decode()  # matched as the string it is


@pytest.mark.parametrize(
    "params",
    [
        {"created_from": "0001-01-01T00:00:00+01:00"},
        {"created_to": "9999-12-31T23:59:59-01:00"},
    ],
    ids=["year-1-east-of-utc", "year-9999-west-of-utc"],
)
def test_a_date_filter_out_of_utcs_range_is_refused_like_any_bad_date(
    staff: Client, params: dict[str, str]
) -> None:
    response = staff.get(JOBS, params)

    assert response.status_code == 302 and response["Location"].endswith("?e=1")


def test_redeliver_failed_since_a_time_out_of_range_is_a_form_error(
    staff: Client, admin_user: Any
) -> None:
    """Year 1, midnight, read in the staff user's time zone east of UTC: before UTC's year 1."""
    StaffTimeZone.objects.create(user=admin_user, time_zone="Europe/Paris")
    endpoint = endpoint_create(company=CompanyFactory(), url="http://127.0.0.1:9/h", events=["*"])

    response = staff.post(
        reverse("admin:webhooks_webhookendpoint_changelist"),
        {
            "action": "redeliver_failed_since",
            helpers.ACTION_CHECKBOX_NAME: [str(endpoint.pk)],
            "since": "0001-01-01T00:00",
        },
    )

    assert response.status_code == 200
    assert "out of range" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (JOBS, {"type": "a\x00"}),
        (JOBS, {"status__exact": "\x00"}),
        ("/admin/webhooks/webhookdelivery/", {"events_id": "jobs.\x00"}),
    ],
)
def test_a_nul_character_in_a_filter_is_a_400(
    staff: Client, path: str, params: dict[str, str]
) -> None:
    response = staff.get(path, params)

    assert response.status_code == 400
    assert "NUL" in response.content.decode()


def test_a_nul_character_in_an_api_query_is_a_problem_document(api: Any) -> None:
    response = api.get("/api/v1/jobs/", {"status": "pending\x00"})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_query"


def test_rebuilding_reports_says_which_selected_jobs_were_skipped(staff: Client) -> None:
    company = CompanyFactory()
    done = [job_in_status(JobStatus.COMPLETED, company=company) for _ in range(2)]
    running = [job_in_status(JobStatus.PROCESSING, company=company) for _ in range(3)]

    response = staff.post(
        reverse("admin:jobs_job_changelist"),
        {
            "action": "rebuild_reports",
            helpers.ACTION_CHECKBOX_NAME: [str(j.pk) for j in done + running],
        },
    )

    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == (
        "2 reports queued for rebuilding. 3 skipped: only a completed job has a report."
    )
