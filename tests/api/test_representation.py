"""One representation: the API answer, the webhook payload and the serializers' fields agree."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Company, JobEvent, JobStatus, PushResult
from jobs.representation import (
    job_event_representation,
    job_representation,
    push_result_representation,
)
from jobs.selectors import job_queryset_all
from jobs.serializers import JobEventSerializer, JobSerializer, PushResultSerializer
from tests.factories import job_in_status
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _by_fields(serializer_class: type[serializers.ModelSerializer], instance: Any) -> Any:
    """What DRF makes of the serializer's declared fields (the schema), field by field."""
    return serializers.ModelSerializer.to_representation(serializer_class(), instance)


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_representations_are_what_the_serializer_fields_make(
    company: Company, api_user: Any, status: JobStatus
) -> None:
    job = job_in_status(status, company=company, total_records=7, metadata={"b": [1, {"c": None}]})
    services.push_result_record(
        job_id=job.pk,
        data=services.PushResultData(
            push_communication_id="p-1",
            status="failed",
            requested_on=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            completed_on=datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC),
            validation_errors=[{"field": "x", "message": "y"}],
        ),
    )
    if not job.is_terminal:  # an event with an actor
        services.job_record_progress(job_id=job.pk, actor=api_user, message="m")
    job = job_queryset_all().get(pk=job.pk)

    assert job_representation(job) == _by_fields(JobSerializer, job)
    for event in JobEvent.objects.filter(job=job).select_related("actor"):
        assert job_event_representation(event) == _by_fields(JobEventSerializer, event)
    result = PushResult.objects.get(job=job)
    assert push_result_representation(result) == _by_fields(PushResultSerializer, result)


def test_the_completed_webhook_and_the_api_answer_agree(
    company: Company, api: APIClient, relay: Callable[[], int]
) -> None:
    WebhookEndpoint.objects.create(
        company=company, url="https://example.com/h", events=["jobs.completed"], secret="whsec_x"
    )
    job = job_in_status(JobStatus.PROCESSING, company=company)

    answer = api.post(f"/api/v1/jobs/{job.pk}/events/", {"status": "completed"}, format="json")

    assert answer.status_code == 201
    relay()  # the worker fans the event out
    [delivery] = WebhookDelivery.objects.filter(events_id="jobs.completed")
    payload = dict(delivery.payload["data"])
    event = payload.pop("job_event")
    body = answer.json()
    assert payload == body["job"]
    assert payload["report"] == {"status": "pending", "url": None}
    assert event == {key: value for key, value in body.items() if key != "job"}
