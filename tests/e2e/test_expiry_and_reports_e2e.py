"""Expiry by Celery beat and report building by the worker, end to end."""

import csv
import io

import pytest
import requests
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from standardwebhooks.webhooks import Webhook

from jobs.models import Job
from tests.e2e.stack import Stack
from tests.live import Http
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def test_beat_expires_a_silent_job(stack: Stack, http: Http, receiver: Receiver) -> None:
    expiry = PeriodicTask.objects.get(task="jobs.expire_stale_jobs")
    expiry.interval, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    expiry.save()  # staff re-timing it in the admin; beat picks the change up
    endpoint = http.post(
        "/api/v1/webhook-endpoints/", {"url": receiver.url + "/hook", "events": ["jobs.failed"]}
    ).json()
    job = http.post("/api/v1/jobs/", {"type": "export", "expires_after": 2}).json()
    assert job["status"] == "pending"

    received = receiver.wait_for(lambda rs: len(rs) >= 1, timeout=45)
    assert len(received) == 1, stack.dump_logs()
    payload = Webhook(endpoint["secret"]).verify(received[0].body, received[0].headers)
    assert payload["event"]["events_id"] == "jobs.failed"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["failure_reason"] == "job_expired"

    polled = http.get(f"/api/v1/jobs/{job['id']}/").json()
    assert (polled["status"], polled["failure_reason"]) == ("failed", "job_expired")
    events = http.get(f"/api/v1/jobs/{job['id']}/events/").json()["results"]
    assert [(e["status"], e["source"]) for e in events] == [
        ("created", "api"),
        ("failed", "system"),
    ]
    assert Job.objects.get(pk=job["id"]).end_time is not None


def test_worker_builds_the_report_and_the_link_downloads(
    stack: Stack, http: Http, receiver: Receiver
) -> None:
    http.post("/api/v1/webhook-endpoints/", {"url": receiver.url, "events": ["jobs.report.ready"]})
    job = http.post("/api/v1/jobs/", {"type": "export", "code": "E2E-REPORT"}).json()
    push = {
        "data": {
            "pushCommunicationId": "p-1",
            "status": "failed",
            "responseCode": 400,
            "validation": {"errors": [{"field": "memo", "message": 'bad "memo", x'}]},
        }
    }
    assert http.post(f"/api/v1/jobs/{job['id']}/push-results/", push).status_code == 201
    done = http.post(f"/api/v1/jobs/{job['id']}/events/", {"status": "completed_with_errors"})
    assert done.status_code == 201

    [ready] = receiver.wait_for(lambda rs: len(rs) >= 1, timeout=45) or [None]
    assert ready is not None, stack.dump_logs()
    assert ready.json["data"]["report"]["status"] == "ready"

    redirect = http.get(f"/api/v1/jobs/{job['id']}/report/", allow_redirects=False)
    assert redirect.status_code == 302
    link = redirect.headers["Location"].replace("http://127.0.0.1:8000", stack.api)
    download = requests.get(link, timeout=30)
    assert download.status_code == 200
    assert 'filename="E2E-REPORT-report.csv"' in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[0][0] == "push_communication_id"
    assert rows[1][0] == "p-1" and rows[1][8] == 'memo: bad "memo", x'
