"""Push results straight from the accounting data service (seed 001) at a company's ingest URL."""

import json
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import (
    Company,
    Job,
    JobEvent,
    PushCorrelation,
    PushIngestKey,
    PushResult,
    UnmatchedPush,
)
from tests import seed001
from tests.factories import CompanyFactory, JobFactory

pytestmark = pytest.mark.django_db

SECRET = "the-senders-webhook-secret-0123456789"
SETTINGS_URL = "/api/v1/push-ingest/"
ROTATE_URL = "/api/v1/push-ingest/rotate-secret/"


def ingest_path(company: Company) -> str:
    return f"/api/v1/push-ingest/{company.pk}/"


def correlations_url(job: Job) -> str:
    return f"/api/v1/jobs/{job.pk}/push-correlations/"


def send(
    company: Company, body: str | bytes, *, secret: str = SECRET, header: str | None = None
) -> Any:
    """POST ``body`` to the ingest URL as the sender does: no bearer token, signed."""
    raw = body.encode() if isinstance(body, str) else body
    signed = seed001.railz_signature(secret, raw) if header is None else header
    return Client().generic(
        "POST",
        ingest_path(company),
        raw,
        content_type="application/json",
        HTTP_RAILZ_SIGNATURE=signed,
    )


@pytest.fixture
def keyed(api: APIClient, company: Company) -> Company:
    assert api.post(ROTATE_URL, {"secret": SECRET}, format="json").status_code == 200
    return company


def push_events(job: Job) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, kind="push_result"))


# --- the URL and its secret -------------------------------------------------------------------


def test_the_ingest_url_names_the_company_and_the_secret_is_never_shown_back(
    api: APIClient, company: Company, settings: Any
) -> None:
    settings.JOBTRAIL_PUBLIC_URL = "https://jobtrail.example.com"
    before = api.get(SETTINGS_URL).json()
    assert before == {
        "url": f"https://jobtrail.example.com/api/v1/push-ingest/{company.pk}/",
        "signature_header": "Railz-Signature",
        "secret_configured": False,
        "previous_secret_expires_at": None,
    }

    given = api.post(ROTATE_URL, {"secret": SECRET}, format="json")

    assert given.status_code == 200
    assert SECRET not in given.content.decode()
    assert given.json()["secret_configured"] is True
    assert SECRET not in api.get(SETTINGS_URL).content.decode()


def test_a_generated_secret_is_shown_once_and_verifies(api: APIClient, company: Company) -> None:
    generated = api.post(ROTATE_URL, {}, format="json").json()["secret"]

    assert generated.startswith("pish_")
    assert "secret" not in api.get(SETTINGS_URL).json()
    assert send(company, seed001.SUCCESS, secret=generated).status_code == 202


def test_rotation_keeps_the_previous_secret_for_a_while_and_twice_drops_it(
    api: APIClient, keyed: Company
) -> None:
    api.post(ROTATE_URL, {"secret": "second-secret-0123456789"}, format="json")

    assert send(keyed, seed001.SUCCESS, secret=SECRET).status_code == 202  # the overlap
    assert api.get(SETTINGS_URL).json()["previous_secret_expires_at"] is not None
    api.post(ROTATE_URL, {"secret": "third-secret-0123456789"}, format="json")
    assert send(keyed, seed001.FAILED, secret=SECRET).status_code == 401
    assert send(keyed, seed001.FAILED, secret="third-secret-0123456789").status_code == 202


@pytest.mark.parametrize("body", [{"secret": "short"}, {"secret": 12345678901234567}, {"x": 1}])
def test_a_bad_secret_is_refused(api: APIClient, company: Company, body: Any) -> None:
    assert api.post(ROTATE_URL, body, format="json").status_code == 400
    assert not PushIngestKey.objects.exists()


def test_the_settings_need_a_token(company: Company) -> None:
    assert APIClient().get(SETTINGS_URL).status_code == 401
    assert APIClient().post(ROTATE_URL, {}, format="json").status_code == 401


# --- authentication of the sender -------------------------------------------------------------


def _wrong_headers() -> dict[str, str | None]:
    raw = seed001.SUCCESS.encode()
    good = seed001.railz_signature(SECRET, raw)
    t, v = good.split(",")
    return {
        "missing": "",
        "another secret": seed001.railz_signature("not-the-secret-0123456789", raw),
        "another body": seed001.railz_signature(SECRET, seed001.FAILED.encode()),
        "an hour old": seed001.railz_signature(SECRET, raw, at=time.time() - 3600),
        "no timestamp": v,
        "no signature": t,
        "garbage": "t=abc,v=xyz",
        # odd timestamps and signatures: refused like any wrong one, never a 500
        "a timestamp too large for a float": "t=1" + "0" * 400 + ",v=ab",
        "a timestamp of 5,000 digits": "t=" + "9" * 5000 + ",v=ab",
        "a superscript digit": "t=\u00b2,v=ab",
        "a non-ASCII signature": t + ",v=\u00e9",
    }


@pytest.mark.parametrize("case", list(_wrong_headers()))
def test_a_wrong_signature_is_401_and_stores_nothing(keyed: Company, case: str) -> None:
    job = JobFactory(company=keyed)
    PushCorrelation.objects.create(
        company=keyed, job=job, kind="push_communication_id", value=seed001.PUSH_COMMUNICATION_ID
    )

    response = send(keyed, seed001.SUCCESS, header=_wrong_headers()[case])

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert response["WWW-Authenticate"].startswith("Railz-Signature")
    assert not PushResult.objects.exists() and not UnmatchedPush.objects.exists()


def test_a_company_without_a_secret_or_unknown_is_401(company: Company) -> None:
    assert send(company, seed001.SUCCESS).status_code == 401
    stranger = Company(pk="00000000-0000-4000-8000-000000000000", name="nobody")
    assert send(stranger, seed001.SUCCESS).status_code == 401


def test_another_companys_secret_does_not_open_this_url(api: APIClient, keyed: Company) -> None:
    other = CompanyFactory(name="Other")
    PushIngestKey.objects.create(company=other, secret="the-other-companys-secret-0123")

    assert send(keyed, seed001.SUCCESS, secret="the-other-companys-secret-0123").status_code == 401


def test_a_bearer_token_is_not_what_opens_it(api: APIClient, keyed: Company) -> None:
    response = api.post(ingest_path(keyed), json.loads(seed001.SUCCESS), format="json")
    assert response.status_code == 401


# --- landing on the right job -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "status", "ids"),
    [(seed001.SUCCESS, "success", ["354"]), (seed001.FAILED, "failed", ["354"])],
    ids=["success", "failed"],
)
def test_each_seed_example_lands_on_the_job_that_registered_it(
    api: APIClient, keyed: Company, example: str, status: str, ids: list[str]
) -> None:
    other = JobFactory(company=keyed)
    job = JobFactory(company=keyed)
    registered = api.post(
        correlations_url(job),
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID},
        format="json",
    )
    assert registered.status_code == 201, registered.content

    response = send(keyed, example)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["job_id"]) == ("attached", str(job.pk))
    result = PushResult.objects.get()
    assert (result.job_id, result.status, result.source_object_ids) == (job.pk, status, ids)
    assert result.request_id == seed001.REQUEST_ID
    job.refresh_from_db()
    counts = (job.push_success_count, job.push_failed_count)
    assert counts == ((1, 0) if status == "success" else (0, 1))
    assert len(push_events(job)) == 1 and push_events(other) == []
    listed = api.get(f"/api/v1/jobs/{job.pk}/push-results/").json()["results"]
    assert [r["push_communication_id"] for r in listed] == [seed001.PUSH_COMMUNICATION_ID]
    if status == "failed":
        assert result.validation_errors[0]["field"] == "currencyRef"


def test_optional_fields_sent_as_null_read_as_not_sent(api: APIClient, keyed: Company) -> None:
    """A sender writing its empty values as null had its push refused with a 400 (and, for a
    sender that does not retry a 400, lost)."""
    job = JobFactory(company=keyed)
    api.post(correlations_url(job), {"push_communication_id": "p-nulls"}, format="json")
    optional = "connectionId businessName serviceName dataType sourceObjectIds requestedOn"
    nulls = dict.fromkeys([*optional.split(), "completedOn", "responseCode", "serviceAccountRef"])
    body = {
        "data": {
            "pushCommunicationId": "p-nulls",
            "status": "failed",
            **nulls,
            "validation": {"errors": [{"field": None, "message": "Currency is required."}]},
        },
        "requestId": None,
    }

    response = send(keyed, json.dumps(body))

    assert response.status_code == 201, response.content
    result = PushResult.objects.get(job=job)
    assert (result.connection_id, result.source_object_ids, result.request_id) == ("", [], "")
    assert result.service_account_ref == {} and result.response_code is None
    assert result.validation_errors == [{"field": "", "message": "Currency is required."}]
    assert result.ignored_fields == []
    other = JobFactory(company=keyed)
    api.post(correlations_url(other), {"push_communication_id": "p-spelled"}, format="json")
    spelled = {"pushCommunicationId": "p-spelled", "status": "success", "sourceObjectIds": None}
    response = send(keyed, json.dumps({"data": {**spelled, "sourceObjectId": ["354"]}}))
    assert response.status_code == 201, response.content
    result = PushResult.objects.get(job=other)
    assert (result.source_object_ids, result.ignored_fields) == (["354"], [])  # the one read
    body["data"]["validation"] = None
    body["data"]["pushCommunicationId"] = None  # required: still refused
    assert send(keyed, json.dumps(body)).status_code == 400


def test_unknown_data_fields_are_listed_back_and_kept(api: APIClient, keyed: Company) -> None:
    job = JobFactory(company=keyed)
    api.post(correlations_url(job), {"push_communication_id": "p-typo"}, format="json")
    body = json.dumps(
        {"data": {"pushCommunicationId": "p-typo", "status": "failed", "validationErrors": []}}
    )

    response = send(keyed, body)

    assert response.status_code == 201, response.content
    assert response.json()["ignored_fields"] == ["validationErrors"]
    assert PushResult.objects.get().ignored_fields == ["validationErrors"]


def test_an_unmatched_push_keeps_its_ignored_fields_until_it_lands(
    api: APIClient, keyed: Company
) -> None:
    body = json.dumps({"data": {"pushCommunicationId": "p-early", "status": "success", "x": 1}})

    early = send(keyed, body)

    assert early.status_code == 202, early.content
    assert early.json()["ignored_fields"] == ["x"]
    job = JobFactory(company=keyed)
    api.post(correlations_url(job), {"push_communication_id": "p-early"}, format="json")
    assert PushResult.objects.get(job=job).ignored_fields == ["x"]


def test_a_push_larger_than_a_job_keeps_is_413_before_it_waits_unmatched(
    api: APIClient, keyed: Company, settings: Any
) -> None:
    """Kept unmatched, it could never be attached: every registration of its ids (and of the
    request id it shares with other pushes) would answer 413 and roll back."""
    settings.JOBTRAIL_MAX_PUSH_RESULT_BYTES = 2048
    big = {
        "pushCommunicationId": "p-big",
        "requestId": "r-shared",
        "status": "success",
        "sourceObjectIds": ["x" * 200 for _ in range(20)],
    }

    response = send(keyed, json.dumps({"data": big}))

    assert response.status_code == 413
    assert response.json()["code"] == "push_result_too_large"
    assert not UnmatchedPush.objects.exists()
    job = JobFactory(company=keyed)
    registered = api.post(
        correlations_url(job),
        {"push_communication_id": "p-big", "request_id": "r-shared"},
        format="json",
    )
    assert registered.status_code == 201, registered.content


def test_the_success_example_as_printed_is_refused_as_malformed(keyed: Company) -> None:
    response = send(keyed, seed001.SUCCESS_AS_PRINTED)

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert not UnmatchedPush.objects.exists()


def test_a_push_is_matched_by_its_request_id(api: APIClient, keyed: Company) -> None:
    job = JobFactory(company=keyed)
    api.post(correlations_url(job), {"request_id": seed001.REQUEST_ID}, format="json")

    assert send(keyed, seed001.FAILED).json()["job_id"] == str(job.pk)


def test_the_push_id_wins_over_the_request_id(api: APIClient, keyed: Company) -> None:
    by_request, by_push = JobFactory(company=keyed), JobFactory(company=keyed)
    api.post(correlations_url(by_request), {"request_id": seed001.REQUEST_ID}, format="json")
    api.post(
        correlations_url(by_push),
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID},
        format="json",
    )

    assert send(keyed, seed001.SUCCESS).json()["job_id"] == str(by_push.pk)


def test_a_repeat_is_recorded_once(api: APIClient, keyed: Company) -> None:
    job = JobFactory(company=keyed)
    api.post(
        correlations_url(job),
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID},
        format="json",
    )

    first, again = send(keyed, seed001.SUCCESS), send(keyed, seed001.SUCCESS)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["status"] == "duplicate"
    job.refresh_from_db()
    assert (PushResult.objects.count(), job.push_success_count, len(push_events(job))) == (1, 1, 1)


def test_a_push_before_its_registration_waits_and_is_attached_when_it_comes(
    api: APIClient, keyed: Company, admin_client: Client
) -> None:
    job = JobFactory(company=keyed)

    early = send(keyed, seed001.FAILED)
    repeat = send(keyed, seed001.FAILED)

    assert (early.status_code, repeat.status_code) == (202, 202)
    assert early.json() == {
        "status": "unmatched",
        "job_id": None,
        "push_communication_id": seed001.PUSH_COMMUNICATION_ID,
        "push_result": None,
        "ignored_fields": [],
    }
    assert UnmatchedPush.objects.count() == 1 and not PushResult.objects.exists()
    waiting = reverse("admin:jobs_unmatchedpush_changelist") + "?attached=no"
    assert seed001.PUSH_COMMUNICATION_ID in admin_client.get(waiting).content.decode()

    registered = api.post(
        correlations_url(job),
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID, "request_id": "r-1"},
        format="json",
    )

    assert registered.status_code == 201
    assert registered.json()["attached"] == 1
    assert {c["kind"] for c in registered.json()["correlations"]} == {
        "push_communication_id",
        "request_id",
    }
    result = PushResult.objects.get()
    assert (result.job_id, result.status, result.response_code) == (job.pk, "failed", 400)
    job.refresh_from_db()
    assert (job.push_success_count, job.push_failed_count) == (0, 1)
    assert len(push_events(job)) == 1
    push = UnmatchedPush.objects.get()
    assert push.job_id == job.pk and push.attached_at is not None
    assert seed001.PUSH_COMMUNICATION_ID not in admin_client.get(waiting).content.decode()
    # registering again attaches nothing more; a later repeat is a duplicate on the job
    again = api.post(
        correlations_url(job),
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID},
        format="json",
    )
    assert again.json()["attached"] == 0
    assert send(keyed, seed001.FAILED).json()["status"] == "duplicate"
    assert PushResult.objects.count() == 1


def test_pushes_of_one_request_wait_for_its_registration(api: APIClient, keyed: Company) -> None:
    job = JobFactory(company=keyed)
    first = json.loads(seed001.SUCCESS)
    second = json.loads(seed001.SUCCESS)
    second["data"]["pushCommunicationId"] = "another-push"
    for body in (first, second):
        assert send(keyed, json.dumps(body)).status_code == 202

    registered = api.post(correlations_url(job), {"request_id": seed001.REQUEST_ID}, format="json")

    assert registered.json()["attached"] == 2
    job.refresh_from_db()
    assert job.push_success_count == 2


def test_a_push_for_a_finished_job_is_kept_on_it(api: APIClient, keyed: Company) -> None:
    from jobs import services

    job = JobFactory(company=keyed)
    api.post(correlations_url(job), {"request_id": seed001.REQUEST_ID}, format="json")
    services.job_complete(job_id=job.pk)

    assert send(keyed, seed001.SUCCESS).status_code == 201
    job.refresh_from_db()
    assert (job.status, job.push_success_count) == ("completed", 1)


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"status": "success"}},
        {"data": {"pushCommunicationId": "p", "status": "maybe"}},
        [],
        {"data": {"pushCommunicationId": "p", "status": "success", "responseCode": "200"}},
        {
            "data": {
                "pushCommunicationId": "p",
                "status": "failed",
                "validation": {"errors": [None]},
            }
        },
    ],
)
def test_a_signed_but_invalid_push_is_400_and_stores_nothing(keyed: Company, body: Any) -> None:
    response = send(keyed, json.dumps(body))

    assert response.status_code == 400
    assert not UnmatchedPush.objects.exists() and not PushResult.objects.exists()


# --- registering correlations -----------------------------------------------------------------


def test_an_id_registered_on_one_job_cannot_go_to_another(api: APIClient, company: Company) -> None:
    first, second = JobFactory(company=company), JobFactory(company=company)
    body = {"push_communication_id": "p-1"}
    assert api.post(correlations_url(first), body, format="json").status_code == 201

    refused = api.post(correlations_url(second), body, format="json")

    assert refused.status_code == 409
    assert refused.json()["code"] == "push_correlation_taken"
    assert list(PushCorrelation.objects.values_list("job_id", flat=True)) == [first.pk]
    listed = api.get(correlations_url(first)).json()
    assert [(c["kind"], c["value"]) for c in listed] == [("push_communication_id", "p-1")]


def test_registering_needs_an_id(api: APIClient, company: Company) -> None:
    job = JobFactory(company=company)
    for body in ({}, {"push_communication_id": ""}, {"other": "x"}, {"request_id": 5}):
        assert api.post(correlations_url(job), body, format="json").status_code == 400
    assert not PushCorrelation.objects.exists()


def test_another_companys_job_cannot_register(other_api: APIClient, company: Company) -> None:
    job = JobFactory(company=company)
    response = other_api.post(correlations_url(job), {"request_id": "r"}, format="json")
    assert response.status_code == 404
    assert not PushCorrelation.objects.exists()


def test_the_same_id_in_two_companies_lands_in_each(api: APIClient, keyed: Company) -> None:
    other = CompanyFactory(name="Other Co")
    PushIngestKey.objects.create(company=other, secret="other-secret-0123456789")
    mine, theirs = JobFactory(company=keyed), JobFactory(company=other)
    api.post(correlations_url(mine), {"request_id": seed001.REQUEST_ID}, format="json")
    PushCorrelation.objects.create(
        company=other, job=theirs, kind="request_id", value=seed001.REQUEST_ID
    )

    assert send(keyed, seed001.SUCCESS).json()["job_id"] == str(mine.pk)
    assert send(other, seed001.SUCCESS, secret="other-secret-0123456789").json()["job_id"] == str(
        theirs.pk
    )
