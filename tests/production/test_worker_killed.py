"""A worker killed mid-delivery: a new worker makes the delivery again, same webhook-id."""

import signal
import time

import pytest

from tests.live import wait_until
from tests.production.stack import ProductionStack
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
