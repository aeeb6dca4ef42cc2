"""Load and accounting for the production suite: job changes over the API, webhooks received."""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.live import Http
from tests.production.stack import ProductionStack
from tests.receiver import Received, Receiver, Reply


def register_endpoint(http: Http, url: str, events: list[str]) -> dict[str, Any]:
    response = http.post("/api/v1/webhook-endpoints/", {"url": url, "events": events})
    assert response.status_code == 201, response.text
    return dict(response.json())


def fail_first_attempt(receiver: Receiver) -> None:
    """Make ``receiver`` answer 500 the first time it sees a webhook-id, 200 afterwards.

    Every delivery then waits for a retry with a countdown.
    """
    seen: set[str] = set()

    def respond(request: Received) -> Reply:
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id in seen:
            return Reply(200)
        seen.add(webhook_id)
        return Reply(500, "try again")

    receiver.respond = respond


class JobStream(threading.Thread):
    """Create jobs and start them over the API, steadily, until ``stop()``; record answers."""

    def __init__(self, http: Http, pause: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.http = http
        self.pause = pause
        self.answers: Counter[int] = Counter()  # status code -> count (0: no answer)
        self._stop_event = threading.Event()

    def _call(self, method: str, path: str, body: dict[str, Any]) -> requests.Response | None:
        try:
            response = getattr(self.http, method)(path, body)
        except requests.RequestException:
            self.answers[0] += 1
            return None
        self.answers[response.status_code] += 1
        return response

    def run(self) -> None:
        while not self._stop_event.is_set():
            job = self._call("post", "/api/v1/jobs/", {"type": "export", "total_records": 1})
            if job is not None and job.status_code == 201:
                self._call(
                    "post", f"/api/v1/jobs/{job.json()['id']}/events/", {"status": "started"}
                )
            time.sleep(self.pause)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=120)


@dataclass
class DeliveryAccount:
    """The deliveries in the database against the webhooks the receiver accepted (2xx)."""

    rows: dict[str, str]  # event_id (webhook-id) -> delivery status
    requests: int
    accepted: Counter[str] = field(default_factory=Counter)  # webhook-id -> 2xx answers

    @classmethod
    def take(cls, stack: ProductionStack, receiver: Receiver) -> "DeliveryAccount":
        rows = dict(stack.query("SELECT event_id, status FROM webhooks_webhookdelivery"))
        with receiver.lock:
            received = list(receiver.requests)
        accepted = Counter(r.headers["webhook-id"] for r in received if 200 <= r.status < 300)
        return cls(rows=rows, requests=len(received), accepted=accepted)

    @property
    def missing(self) -> set[str]:
        """Deliveries the receiver never accepted."""
        return set(self.rows) - set(self.accepted)

    @property
    def not_delivered(self) -> dict[str, str]:
        return {event_id: s for event_id, s in self.rows.items() if s != "delivered"}

    @property
    def duplicates(self) -> int:
        """Accepted more than once (receivers dedupe on webhook-id)."""
        return sum(n - 1 for n in self.accepted.values())

    @property
    def complete(self) -> bool:
        return bool(self.rows) and not self.missing and not self.not_delivered

    def summary(self) -> str:
        return (
            f"{len(self.rows)} deliveries in the database, {len(self.accepted)} unique "
            f"webhook-ids accepted, {self.requests} requests received, "
            f"{self.duplicates} duplicates, {len(self.missing)} missing, "
            f"{len(self.not_delivered)} not marked delivered"
        )
