"""The wide lane (``webhooks.lanes``) in the deployed shape: the Procfile's `wide` worker sends a
wide company's webhooks; while it is down, the Procfile's `worker` takes them over."""

import re
import time
from collections import Counter

import pytest

from tests.live import wait_until
from tests.production.stack import ProductionStack
from tests.production.traffic import register_endpoint
from tests.receiver import Receiver
from webhooks.lanes import WIDE_FAN_OUT

pytestmark = pytest.mark.production


def sent_by(stack: ProductionStack, process: str, lane: str) -> int:
    """How many deliveries ``process``'s batch sender rounds of ``lane`` logged as sent."""
    pattern = rf"sent (\d+) due webhook deliveries \({lane} lane\)"
    return sum(int(n) for n in re.findall(pattern, stack.log(process)))


def create_job(stack: ProductionStack) -> str:
    response = stack.http().post("/api/v1/jobs/", {"type": "export", "total_records": 1})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def received(receiver: Receiver, job_id: str) -> Counter[str]:
    """The webhook-ids of the ``jobs.create`` webhooks of ``job_id`` received, by endpoint."""
    with receiver.lock:
        return Counter(
            f"{r.path} {r.headers['webhook-id']}"
            for r in receiver.requests
            if r.json.get("event", {}).get("object_id") == job_id
        )


def test_the_wide_worker_sends_a_wide_companys_webhooks_and_the_worker_takes_over_while_it_is_down(
    stack: ProductionStack, receiver: Receiver
) -> None:
    http = stack.http()
    for n in range(WIDE_FAN_OUT):
        register_endpoint(http, f"{receiver.url}/w{n}", ["jobs.create"])

    first = create_job(stack)
    wait_until(lambda: len(received(receiver, first)) == WIDE_FAN_OUT, 60, "the 50 webhooks")
    assert set(received(receiver, first).values()) == {1}  # each endpoint's once
    # the wide worker relayed and sent them (under SCHED_IDLE on a host the other production
    # test may keep busy, it can fall 10 s behind: then the worker takes the rest over)
    assert re.search(r"relayed \d+ job events \(wide lane\)", stack.log("wide"))
    wide_sent = sent_by(stack, "wide", "wide")
    assert wide_sent > 0
    assert wide_sent + sent_by(stack, "worker", "narrow") == WIDE_FAN_OUT
    assert "(wide lane)" not in stack.log("worker")

    stack.processes.stop("wide")
    stopped = time.monotonic()
    second = create_job(stack)
    # the event waits JOBTRAIL_WIDE_LANE_TAKEOVER (10 s in this stack) for the wide relay, then
    # the worker relays it (woken by the 5 s sweep); its deliveries, due from then on, wait as
    # long for the wide sender, then the worker sends them (woken by the dispatcher)
    narrow_before = sent_by(stack, "worker", "narrow")
    wait_until(lambda: len(received(receiver, second)) == WIDE_FAN_OUT, 120, "the takeover")
    assert time.monotonic() - stopped >= 10  # not before the takeover time
    assert set(received(receiver, second).values()) == {1}
    assert sent_by(stack, "worker", "narrow") - narrow_before == WIDE_FAN_OUT
    [(delivered,)] = stack.query(
        "SELECT count(*) FROM webhooks_webhookdelivery WHERE status = 'delivered'"
    )
    assert delivered == 2 * WIDE_FAN_OUT

    # back: the wide worker takes the company's work again, the wake-ups left for it meanwhile
    # in its queue cost it an empty look each
    stack.start_wide()
    third = create_job(stack)
    wait_until(lambda: len(received(receiver, third)) == WIDE_FAN_OUT, 60, "the third job's")
    assert set(received(receiver, third).values()) == {1}
    assert sent_by(stack, "wide", "wide") > wide_sent
    assert sent_by(stack, "wide", "wide") + sent_by(stack, "worker", "narrow") == 3 * WIDE_FAN_OUT
