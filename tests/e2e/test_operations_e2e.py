"""The operations view against real processes: a stopped worker shows within a minute."""

from typing import Any

import pytest
import requests
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.e2e.stack import Stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

TOKEN = "e2e-operations-token"


def operations(stack: Stack) -> tuple[int, dict[str, Any]]:
    try:
        response = requests.get(
            f"{stack.api}/healthz/operations",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
    except requests.RequestException:
        return 0, {}
    return response.status_code, response.json()


@pytest.mark.stack_env(
    JOBTRAIL_HEARTBEAT_INTERVAL="1",
    JOBTRAIL_OPS_HEARTBEAT_MAX_AGE="6",
    JOBTRAIL_OPS_TOKEN=TOKEN,
)
def test_stopping_the_worker_turns_the_operations_view_degraded(stack: Stack) -> None:
    # The heartbeat was registered with this process's default interval; re-time it the way
    # staff would in the admin (beat picks the change up).
    heartbeat = PeriodicTask.objects.get(task="ops.heartbeat")
    heartbeat.interval, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    heartbeat.save()

    assert requests.get(f"{stack.api}/healthz/operations", timeout=10).status_code == 401
    seen: list[tuple[int, dict[str, Any]]] = []

    def ok() -> bool:
        seen.append(operations(stack))
        return seen[-1][0] == 200

    wait_until(ok, 90, "the operations view to report ok")
    body = seen[-1][1]
    assert body["status"] == "ok", stack.dump_logs()
    assert body["checks"]["beat"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "ok"
    assert body["checks"]["worker"]["hostname"].startswith("e2e-")

    stack.stop_worker()

    def worker_stalled() -> bool:
        seen.append(operations(stack))
        status, body = seen[-1]
        return (
            status == 503
            and body["checks"]["beat"]["status"] == "ok"
            and body["checks"]["worker"]["status"] == "stale"
        )

    wait_until(worker_stalled, 90, "the operations view to name the stopped worker")
    body = seen[-1][1]
    assert body["status"] == "degraded"
    assert [p.split(":")[0] for p in body["problems"]] == ["worker"]
    assert "beat is alive" in body["problems"][0]
    # the load balancer's check keeps its meaning: web, database and broker are fine
    assert requests.get(f"{stack.api}/healthz", timeout=10).status_code == 200
