"""A push and the registration that matches it, committing at once, never miss each other."""

import threading
import time

import pytest
from django.db import connection, transaction

from jobs import ingest
from jobs.models import PushResult, UnmatchedPush
from jobs.services import PushResultData
from tests.factories import CompanyFactory, JobFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_registration_waits_for_a_push_being_stored_and_attaches_it() -> None:
    company = CompanyFactory()
    job = JobFactory(company=company)
    push = PushResultData(push_communication_id="p-race", status="success", request_id="r-race")
    stored = threading.Event()
    outcome: dict[str, object] = {}

    def push_arrives() -> None:
        try:
            with transaction.atomic():
                outcome["ingest"] = ingest.push_ingest(company=company, data=push).outcome
                stored.set()
                time.sleep(1.0)  # the registration runs meanwhile; this is not committed yet
        finally:
            connection.close()

    def registration_arrives() -> None:
        try:
            stored.wait(10)
            _, attached = ingest.push_correlation_register(
                job_id=job.pk, company=company, push_communication_id="p-race"
            )
            outcome["attached"] = attached
        finally:
            connection.close()

    threads = [threading.Thread(target=push_arrives), threading.Thread(target=registration_arrives)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcome == {"ingest": "unmatched", "attached": 1}
    assert PushResult.objects.get().job_id == job.pk
    assert UnmatchedPush.objects.get().attached_at is not None
