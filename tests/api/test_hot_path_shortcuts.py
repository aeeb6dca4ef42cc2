"""The hot path's shortcuts answer exactly what the long way would (issue 10)."""

import uuid
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from config.negotiation import CommonContentNegotiation
from config.rows import Writer, _prepared
from jobs.api import job_path
from jobs.models import EventStatus, Job, JobEvent
from jobs.services import job_create

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/v1/jobs/"


def test_the_job_path_is_what_reverse_answers() -> None:
    for _ in range(3):
        job_id = uuid.uuid4()
        assert job_path(job_id) == reverse("api-v1:job-detail", args=[job_id])


def test_a_created_job_is_located_at_its_detail_url(api: Any) -> None:
    response = api.post(JOBS_URL, {"type": "export"}, format="json")
    assert response.status_code == 201
    assert response["Location"] == f"http://testserver/api/v1/jobs/{response.json()['id']}/"


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        (None, ""),
        ("*/*", ""),
        ("application/json", ""),
        ("application/json", "?format=json"),
        ("application/json; indent=4", ""),
        ("text/html", ""),
        ("*/*", "?format=api"),
    ],
)
def test_negotiation_answers_as_drf_does(accept: str | None, query: str) -> None:
    extra = {"HTTP_ACCEPT": accept} if accept is not None else {}
    for renderers in ([JSONRenderer()], [JSONRenderer(), BrowsableAPIRenderer()]):
        answers = []
        for negotiator in (DefaultContentNegotiation(), CommonContentNegotiation()):
            request = Request(APIRequestFactory().get(f"/x/{query}", **extra))
            try:
                renderer, media_type = negotiator.select_renderer(request, renderers)
                answers.append((renderer, media_type))
            except Exception as exc:
                answers.append((type(exc), str(exc)))
        # twice: the remembered answer too
        request = Request(APIRequestFactory().get(f"/x/{query}", **extra))
        try:
            answers.append(CommonContentNegotiation().select_renderer(request, renderers))
        except Exception as exc:
            answers.append((type(exc), str(exc)))
        assert answers[0] == answers[1] == answers[2], (accept, query, answers)


def test_an_unacceptable_accept_is_still_406(api: Any) -> None:
    response = api.get(JOBS_URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 406


def _stamped(field: Any) -> bool:
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


def _comparable(value: Any) -> Any:
    """psycopg's ``Jsonb`` wrapper has no equality of its own: compare its type and object."""
    if type(value).__name__ == "Jsonb":
        return ("Jsonb", value.obj)
    return (type(value), value)


def _slow(fields: Any, obj: Any, add: bool) -> list[Any]:
    """The long way (``pre_save`` + ``get_db_prep_save``); a timestamp stamped by its field
    is left out (each call stamps a new instant)."""
    return [
        None if _stamped(f) else _comparable(f.get_db_prep_save(f.pre_save(obj, add), connection))
        for f in fields
    ]


def _fast(writer: Any, obj: Any, add: bool) -> list[Any]:
    values = _prepared(writer._insert_plan, obj, add, connection)
    return [
        None if _stamped(f) else _comparable(v)
        for f, v in zip(writer.insert_fields, values, strict=True)
    ]


def test_writer_values_are_what_the_fields_prepare(company: Any) -> None:
    job = job_create(company=company, type="export", total_records=5, metadata={"a": [1]})
    writer = Writer(Job)
    assert _fast(writer, job, False) == _slow(writer.insert_fields, job, False)
    # a str subclass (a choices enum), None and an int go the right way
    job.status = EventStatus.STARTED  # type: ignore[assignment]
    job.total_records = None
    job.effected_records = 3
    assert _fast(writer, job, False) == _slow(writer.insert_fields, job, False)
    event = JobEvent.objects.filter(job=job).first()
    assert event is not None
    event_writer = Writer(JobEvent)
    assert _fast(event_writer, event, False) == _slow(event_writer.insert_fields, event, False)
