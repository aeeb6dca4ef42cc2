"""The event log is the outbox: the relay writes a delivery per subscribed endpoint."""

import re
from typing import Any

import pytest
from django.db import transaction

from jobs import services as jobs
from jobs.models import Job, JobEvent
from jobs.relay import webhook_id_of
from tests.factories import CompanyFactory, JobFactory
from tests.relay import run_relay
from tests.webhooks.helpers import deliveries, endpoint_for
from webhooks.events import EVENT_TYPES, pattern_matches
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def _lifecycle(company) -> Job:
    job = JobFactory(company=company)
    jobs.job_start(job_id=job.pk)
    jobs.job_record_progress(job_id=job.pk, effected_records=1)
    jobs.push_result_record(
        job_id=job.pk, data=jobs.PushResultData(push_communication_id="p1", status="success")
    )
    jobs.job_complete(job_id=job.pk)
    return job


def test_every_job_change_fires_its_event() -> None:
    company = CompanyFactory()
    endpoint_for(company, "http://127.0.0.1:9/hook", ["*"])
    job = _lifecycle(company)
    assert [d.events_id for d in deliveries(object_id=str(job.pk))] == [
        "jobs.create",
        "jobs.started",
        "jobs.update",
        "jobs.push_results.create",
        "jobs.completed",
    ]


@pytest.mark.parametrize(
    ("reason_event", "expected"),
    [("completed_with_errors", "jobs.completed_with_errors"), ("failed", "jobs.failed")],
)
def test_terminal_events(reason_event: str, expected: str) -> None:
    company = CompanyFactory()
    endpoint_for(company, "http://127.0.0.1:9/hook", [expected])
    job = JobFactory(company=company)
    jobs.job_apply_event(
        job_id=job.pk,
        status=reason_event,
        failure_reason="service_timeout" if reason_event == "failed" else "",
    )
    [delivery] = deliveries()
    assert delivery.events_id == expected
    assert delivery.payload["data"]["status"] == reason_event


def test_patterns_select_events() -> None:
    company = CompanyFactory()
    only_completed = endpoint_for(company, "http://127.0.0.1:9/a", ["jobs.completed"])
    all_jobs = endpoint_for(company, "http://127.0.0.1:9/b", ["jobs.*"])
    pushes = endpoint_for(company, "http://127.0.0.1:9/c", ["jobs.push_results.create"])
    _lifecycle(company)
    assert [d.events_id for d in deliveries(endpoint=only_completed)] == ["jobs.completed"]
    assert len(deliveries(endpoint=all_jobs)) == 5
    assert [d.events_id for d in deliveries(endpoint=pushes)] == ["jobs.push_results.create"]


def test_pattern_matching_rules() -> None:
    assert all(pattern_matches("*", e) for e in EVENT_TYPES)
    assert all(pattern_matches("jobs.*", e) for e in EVENT_TYPES)
    assert pattern_matches("jobs.push_results.*", "jobs.push_results.create")
    assert not pattern_matches("jobs.completed", "jobs.completed_with_errors")
    assert not pattern_matches("jobs.complete*", "jobs.completed")


def test_inactive_and_other_company_endpoints_get_nothing() -> None:
    company, other = CompanyFactory(), CompanyFactory()
    inactive = endpoint_for(company, "http://127.0.0.1:9/a")
    inactive.is_active = False
    inactive.save()
    endpoint_for(other, "http://127.0.0.1:9/b")
    _lifecycle(company)
    assert WebhookDelivery.objects.count() == 0


def test_webhook_id_is_a_keyed_hash_not_reversible_to_the_shared_event_counter(
    settings: Any,
) -> None:
    """The event ids count every company's events: a receiver that could turn a webhook-id
    back into one (a hash of it with a constant from the source, tried for 1, 2, 3…) would
    learn how many events other companies logged in between. The id depends on the server's
    secret key, and is the same whenever it is asked for (stored on each delivery)."""
    company = CompanyFactory()
    endpoint = endpoint_for(company, "http://127.0.0.1:9/a", ["jobs.started"])
    job = JobFactory(company=company)
    jobs.job_start(job_id=job.pk, message="go")
    [delivery] = deliveries(endpoint=endpoint)
    event = JobEvent.objects.get(job=job, status="started")
    assert delivery.event_id == webhook_id_of(event)
    assert re.fullmatch(r"msg_[0-9a-f]{32}", delivery.event_id)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert webhook_id_of(event) != delivery.event_id


def test_envelope_and_shared_event_id_across_endpoints() -> None:
    company = CompanyFactory()
    first = endpoint_for(company, "http://127.0.0.1:9/a", ["jobs.started"])
    second = endpoint_for(company, "http://127.0.0.1:9/b", ["jobs.started"])
    job = JobFactory(company=company)
    jobs.job_start(job_id=job.pk, message="go")
    [a] = deliveries(endpoint=first)
    [b] = deliveries(endpoint=second)
    assert a.event_id == b.event_id and a.event_id.startswith("msg_")
    assert set(a.payload) == {"event", "data"}
    assert a.payload["event"]["events_id"] == "jobs.started"
    assert a.payload["event"]["object_id"] == str(job.pk)
    assert a.payload["event"]["dt"].startswith(str(a.created_at.year))
    data = a.payload["data"]
    assert data["id"] == str(job.pk) and data["status"] == "processing"
    assert data["job_event"]["status"] == "started" and data["job_event"]["sequence"] == 2


def test_rolled_back_change_leaves_no_event_and_sends_nothing(
    django_capture_on_commit_callbacks,
) -> None:
    company = CompanyFactory()
    endpoint_for(company, "http://127.0.0.1:9/a")
    job = JobFactory(company=company)
    run_relay()
    before = (JobEvent.objects.count(), WebhookDelivery.objects.count())

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        jobs.job_start(job_id=job.pk)
        raise RuntimeError("the caller's transaction fails after the change")

    assert callbacks == []
    run_relay()
    assert (JobEvent.objects.count(), WebhookDelivery.objects.count()) == before
    job.refresh_from_db()
    assert job.status == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_change_writes_its_event_only_and_wakes_the_relay_once_on_commit(monkeypatch) -> None:
    company = CompanyFactory()
    for n in range(5):
        endpoint_for(company, f"http://127.0.0.1:9/{n}")
    job = JobFactory(company=company)
    run_relay()
    published: list[str] = []
    monkeypatch.setattr("config.outbox.publish", lambda name, args=(): published.append(name))

    with transaction.atomic():  # two changes in one transaction: one wake-up, after the commit
        jobs.job_start(job_id=job.pk)
        jobs.job_record_progress(job_id=job.pk, effected_records=1)
        assert published == []
    assert published == ["jobs.relay_events"]

    # nothing fanned out by the change itself: only the create event's 5 rows so far
    assert WebhookDelivery.objects.filter(object_id=str(job.pk)).count() == 5
    assert JobEvent.objects.filter(job=job, relayed_at__isnull=True).count() == 2
    run_relay()
    assert WebhookDelivery.objects.filter(object_id=str(job.pk)).count() == 3 * 5
    assert published == ["jobs.relay_events", "webhooks.send_due_deliveries"]


def test_malformed_endpoint_events_match_nothing_instead_of_failing() -> None:
    company = CompanyFactory()
    endpoint = endpoint_for(company, "http://127.0.0.1:9/a")
    WebhookDelivery.objects.all().delete()
    type(endpoint).objects.filter(pk=endpoint.pk).update(events=5)
    JobFactory(company=company)  # no 500 for the job write
    assert WebhookDelivery.objects.count() == 0
