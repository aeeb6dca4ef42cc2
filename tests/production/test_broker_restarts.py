"""The broker restarts while webhooks are in flight: nothing is lost, the worker stays up."""

import contextlib
import signal
import time

import pytest

from tests.live import wait_until
from tests.production.stack import ProductionStack
from tests.production.traffic import (
    DeliveryAccount,
    JobStream,
    fail_first_attempt,
    register_endpoint,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.production

RESTARTS = 5
DOWN_FOR = 2.0  # seconds the broker stays down (RabbitMQ then takes ~5s more to start)
UP_FOR = 2.0  # seconds of traffic between outages


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
def test_broker_restarts_lose_nothing_and_the_worker_stays_up(
    stack: ProductionStack, receiver: Receiver, broker: str
) -> None:
    http = stack.http()
    # every delivery is refused once, so retries wait with a countdown when the broker goes
    fail_first_attempt(receiver)
    register_endpoint(http, receiver.url + "/hook", ["*"])
    worker_pid = stack.processes.pid("worker")
    beat_pid = stack.processes.pid("beat")

    stream = JobStream(stack.http())
    stream.start()
    started = time.monotonic()
    outages = []
    try:
        for n in range(RESTARTS):
            time.sleep(UP_FOR)
            sig = signal.SIGKILL if n % 2 == 0 else signal.SIGTERM
            down_at = time.monotonic()
            stack.broker.stop(sig)
            time.sleep(DOWN_FOR)
            stack.broker.start()
            outages.append((signal.Signals(sig).name, time.monotonic() - down_at))
        time.sleep(UP_FOR)
    finally:
        stream.stop()

    # A job change after the last restart is delivered: the worker is still consuming.
    last = http.post("/api/v1/jobs/", {"type": "export", "code": "after-the-last-restart"})
    assert last.status_code == 201, last.text
    last_id = last.json()["id"]

    def worker_died() -> bool:
        return not stack.alive("worker", worker_pid)

    receiver.wait_for(
        lambda rs: worker_died() or any(r.status == 200 and last_id in r.body for r in rs),
        timeout=120,
    )

    def account() -> DeliveryAccount:
        return DeliveryAccount.take(stack, receiver)

    converged_at: float | None = None
    if not worker_died():
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: worker_died() or account().complete, 180, "every delivery accepted")
            converged_at = time.monotonic()
    result = account()
    print(
        f"\n[production] broker={broker}: {len(outages)} restarts "
        f"({', '.join(f'{s} down {d:.1f}s' for s, d in outages)}); API answers "
        f"{dict(sorted(stream.answers.items()))}; {result.summary()}; all delivered "
        + (
            f"{converged_at - started:.0f}s after the first outage began"
            if converged_at
            else "NEVER"
        )
        + f"; worker pid {worker_pid} "
        + ("still running" if stack.alive("worker", worker_pid) else "EXITED")
    )

    assert stack.alive("worker", worker_pid), "the Celery worker exited"
    assert stack.alive("beat", beat_pid), "Celery beat exited"
    assert any(r.status == 200 and last_id in r.body for r in receiver.requests), (
        "a job change after the last restart was not delivered"
    )
    assert result.complete, result.summary()
    # the API keeps accepting job changes while the broker is down (the outbox holds them)
    assert set(stream.answers) == {201}, dict(stream.answers)
    assert len(result.rows) > 2 * RESTARTS
