"""/metrics against real processes: what the Celery worker counts shows in gunicorn's scrape.

The worker (prefork, as in the Procfile) relays the job's events and sends its webhook in its
pool processes; the web's workers write their request timings in theirs. Every one of them
writes to the stack's PROMETHEUS_MULTIPROC_DIR, and any gunicorn worker's scrape adds them up.
"""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, wait_until
from tests.live import Http
from tests.receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

TOKEN = "e2e-metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Stack, token: str = TOKEN) -> Samples:
    response = requests.get(
        f"{stack.api}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.stack_env(JOBTRAIL_METRICS_TOKEN=TOKEN)
def test_a_delivery_made_by_the_worker_shows_in_the_webs_scrape(
    stack: Stack, http: Http, receiver: Receiver
) -> None:
    stack.stop_worker()  # the Procfile's worker: prefork pool processes, each its own files
    stack.start_worker(pool=("--concurrency", "2"))
    refused = requests.get(f"{stack.api}/metrics", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert (
        requests.get(
            f"{stack.api}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
        ).status_code
        == 401
    )

    before = scrape(stack)
    registered = http.post(
        "/api/v1/webhook-endpoints/", {"url": receiver.url + "/hook", "events": ["jobs.create"]}
    )
    assert registered.status_code == 201, registered.text
    created = http.post("/api/v1/jobs/", {"type": "export"})
    assert created.status_code == 201, created.text
    receiver.wait_for(lambda received: len(received) >= 1, timeout=60)

    delivered = "jobtrail_webhook_deliveries_total"
    wait_until(
        lambda: (
            value(scrape(stack), delivered, outcome="delivered")
            >= value(before, delivered, outcome="delivered") + 1
        ),
        60,
        "the worker's delivery in the web's scrape",
    )
    after = scrape(stack)
    assert value(after, delivered, outcome="delivered") == (
        value(before, delivered, outcome="delivered") + 1
    )
    changes = {"status": "created", "failure_reason": ""}
    assert value(after, "jobtrail_job_changes_total", **changes) == (
        value(before, "jobtrail_job_changes_total", **changes) + 1
    )
    for histogram in (
        "jobtrail_webhook_attempt_duration_seconds_count",
        "jobtrail_webhook_first_attempt_delay_seconds_count",
    ):
        assert value(after, histogram) == value(before, histogram) + 1, histogram
    create = {"route": "/api/v1/jobs/", "method": "POST", "status": "2xx"}
    count = "jobtrail_http_request_duration_seconds_count"
    assert value(after, count, **create) == value(before, count, **create) + 1
    assert value(after, "jobtrail_backlog_up") == 1
    assert value(after, "jobtrail_job_events_unrelayed") == 0
