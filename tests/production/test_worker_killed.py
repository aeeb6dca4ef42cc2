"""A worker killed mid-delivery: a new worker makes the delivery again, same webhook-id."""

import signal
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.live import wait_until
from tests.production.stack import METRICS_TOKEN, ProductionStack
from tests.production.traffic import register_endpoint
from tests.receiver import Receiver, Reply

pytestmark = pytest.mark.production

HOLD = 8.0  # the receiver holds the first request this long: the delivery is in flight


def test_worker_killed_mid_delivery_is_redelivered_with_the_same_webhook_id(
    stack: ProductionStack, receiver: Receiver
) -> None:
    http = stack.http()
    receiver.reply(Reply(200, delay=HOLD))
    register_endpoint(http, receiver.url + "/hook", ["jobs.create"])
    job = http.post("/api/v1/jobs/", {"type": "export"})
    assert job.status_code == 201, job.text

    first = receiver.wait_for(lambda rs: len(rs) >= 1, timeout=60)
    assert first, "the first attempt never arrived"
    stack.processes.stop("worker", signal.SIGKILL)  # the worker and its pool, mid-request
    killed_at = time.monotonic()
    stack.start_worker()

    again = receiver.wait_for(lambda rs: len(rs) >= 2, timeout=240)
    redelivered_after = time.monotonic() - killed_at
    assert len(again) >= 2, "the delivery was not made again after the worker was killed"
    webhook_id = first[0].headers["webhook-id"]
    print(
        f"\n[production] worker SIGKILLed mid-delivery: redelivered {redelivered_after:.0f}s "
        f"after the kill (new worker started at once), same webhook-id: "
        f"{again[1].headers['webhook-id'] == webhook_id}"
    )
    assert again[1].headers["webhook-id"] == webhook_id
    assert again[1].body == first[0].body

    def delivered() -> bool:
        rows = stack.query(
            "SELECT status FROM webhooks_webhookdelivery WHERE event_id = %s", [webhook_id]
        )
        return rows == [("delivered",)]

    wait_until(delivered, 30, "the delivery to be marked delivered")

    # The web's /metrics adds up every process's files, the SIGKILLed worker's included: its
    # relay counted the job's creation; the new worker counted the one delivery. The attempt
    # that died with its worker was never recorded: one attempt observed, and it was the
    # second (no first-attempt delay).
    def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = requests.get(
            f"{stack.api}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    delivered_key = ("jobtrail_webhook_deliveries_total", frozenset({("outcome", "delivered")}))
    wait_until(lambda: scraped().get(delivered_key) == 1.0, 30, "the delivery in /metrics")
    samples = scraped()
    created = frozenset({("status", "created"), ("failure_reason", "")})
    assert samples[("jobtrail_job_changes_total", created)] == 1.0
    assert samples[("jobtrail_webhook_attempt_duration_seconds_count", frozenset())] == 1.0
    assert samples[("jobtrail_webhook_first_attempt_delay_seconds_count", frozenset())] == 0.0
