"""Issue 12 end to end: gunicorn, a Celery worker and beat on Redis, real local receivers.

Every hand-off outcome of seed 000's platform side (401, 403, connection refused, timeout,
success, success then expiry), seed 002's example request as printed (lower-case scheme), and
seed 001's two examples sent to a company's ingest URL without a job id.
"""

import json
from typing import Any

import pytest
import requests
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from standardwebhooks.webhooks import Webhook

from tests import seed001
from tests.e2e.stack import Stack, wait_until
from tests.factories import ApiClientFactory, CompanyFactory
from tests.live import Http, free_port, obtain_token
from tests.receiver import Receiver, Reply
from webhooks.models import WebhookDelivery

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.redis,
    # two attempts one second apart; a receiver has 2 s to answer
    pytest.mark.stack_env(JOBTRAIL_HANDOFF_RETRY_SCHEDULE="1", JOBTRAIL_WEBHOOK_TIMEOUT="2"),
]


def client_of(stack: Stack, name: str) -> Http:
    user = ApiClientFactory(company=CompanyFactory(name=name))
    return Http(stack.api, obtain_token(stack.api, user.username, "pass-word-123"))


def register_integration(http: Http, url: str) -> dict[str, Any]:
    response = http.post("/api/v1/webhook-endpoints/", {"url": url, "role": "integration"})
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "integration"
    return dict(response.json())


def job_of(http: Http, job_id: str) -> dict[str, Any]:
    return dict(http.get(f"/api/v1/jobs/{job_id}/").json())


def timeline(http: Http, job_id: str) -> list[dict[str, Any]]:
    return list(http.get(f"/api/v1/jobs/{job_id}/events/").json()["results"])


def test_every_handoff_outcome(stack: Stack, receiver: Receiver) -> None:
    expiry = PeriodicTask.objects.get(task="jobs.expire_stale_jobs")
    expiry.interval, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    expiry.save()  # beat runs the expiry every second from now on
    receiver.path_replies = {
        "/401": Reply(401, "bad signature"),
        "/403": Reply(403, "forbidden"),
        "/slow": Reply(200, delay=4),  # past the 2 s deadline
        "/ok": Reply(204, ""),
        "/ok-expire": Reply(204, ""),
        "/watch": Reply(204, ""),
    }
    targets = {
        "401": receiver.url + "/401",
        "403": receiver.url + "/403",
        "refused": f"http://127.0.0.1:{free_port()}/int",  # nothing listens there
        "timeout": receiver.url + "/slow",
        "success": receiver.url + "/ok",
        "success then expiry": receiver.url + "/ok-expire",
    }
    clients, secrets, jobs = {}, {}, {}
    for outcome, url in targets.items():
        clients[outcome] = http = client_of(stack, f"Company {outcome}")
        secrets[outcome] = register_integration(http, url)["secret"]
    watcher = clients["401"].post(
        "/api/v1/webhook-endpoints/", {"url": receiver.url + "/watch", "events": ["jobs.failed"]}
    )
    assert watcher.status_code == 201
    for outcome, http in clients.items():
        body: dict[str, Any] = {"type": "export", "code": f"HANDOFF-{outcome.replace(' ', '-')}"}
        if outcome == "success then expiry":
            body["expires_after"] = 3
        created = http.post("/api/v1/jobs/", body)
        assert created.status_code == 201, created.text
        jobs[outcome] = created.json()["id"]

    expected = {
        "401": ("failed", "authentication_failure"),
        "403": ("failed", "authentication_failure"),
        "refused": ("failed", "service_unreachable"),
        "timeout": ("failed", "service_timeout"),
        "success then expiry": ("failed", "job_expired"),
    }

    def settled() -> bool:
        return all(
            (job_of(clients[o], jobs[o])["status"], job_of(clients[o], jobs[o])["failure_reason"])
            == want
            for o, want in expected.items()
        )

    try:
        wait_until(settled, 90, "every job to reach its outcome")
    except TimeoutError:
        states = {o: (job_of(clients[o], jobs[o])["status"]) for o in jobs}
        rows = list(WebhookDelivery.objects.values("events_id", "status", "attempts", "last_error"))
        raise AssertionError(f"{states}\n{rows}\n{stack.dump_logs()}") from None

    # 401 and 403: final after JOBTRAIL_HANDOFF_AUTH_ATTEMPTS (2), with what happened
    for outcome, code in (("401", 401), ("403", 403)):
        http, job_id = clients[outcome], jobs[outcome]
        events = timeline(http, job_id)
        assert [(e["status"], e["source"]) for e in events] == [
            ("created", "api"),
            ("failed", "system"),
        ]
        assert f"HTTP {code}" in events[-1]["message"]
        assert "after 2 attempts" in events[-1]["message"]
        hits = [r for r in receiver.requests if r.path == f"/{code}"]
        assert len(hits) == 2
        assert len({r.headers["webhook-id"] for r in hits}) == 1
        payload = Webhook(secrets[outcome]).verify(hits[0].body, hits[0].headers)
        assert payload["event"]["events_id"] == "jobs.create"
        assert payload["data"]["id"] == job_id
    for outcome, words in (("refused", "Connection refused"), ("timeout", "Timed out")):
        message = timeline(clients[outcome], jobs[outcome])[-1]["message"]
        assert "after 2 attempts" in message and words in message, message
    assert len([r for r in receiver.requests if r.path == "/slow"]) == 2
    # jobs.failed fires as for any failure
    receiver.wait_for(lambda rs: any(r.path == "/watch" for r in rs), 30)
    [failed] = [r for r in receiver.requests if r.path == "/watch"]
    assert failed.json["event"]["events_id"] == "jobs.failed"
    assert failed.json["data"]["failure_reason"] == "authentication_failure"
    # delivered hand-offs leave their jobs pending for the integration; expiry still applies
    for outcome in ("success", "success then expiry"):
        [hit] = [r for r in receiver.requests if r.path == targets[outcome][len(receiver.url) :]]
        handed = Webhook(secrets[outcome]).verify(hit.body, hit.headers)
        assert handed["data"]["id"] == jobs[outcome]
        handoff = WebhookDelivery.objects.get(object_id=jobs[outcome], handoff=True)
        assert (handoff.status, handoff.attempts) == ("delivered", 1)
    assert job_of(clients["success"], jobs["success"])["status"] == "pending"
    expired = timeline(clients["success then expiry"], jobs["success then expiry"])
    assert [(e["status"], e["failure_reason"]) for e in expired] == [
        ("created", None),
        ("failed", "job_expired"),
    ]


def test_clients_and_senders_that_follow_the_seeds_to_the_letter(stack: Stack, http: Http) -> None:
    # seed 002: "Header (Authorization): bearer {access-token}", exactly as printed
    job = http.post("/api/v1/jobs/", {"type": "export", "code": "SEED-002"}).json()
    token = http.session.headers["Authorization"].split(" ", 1)[1]
    printed = requests.post(
        f"{stack.api}/services/rest/v1/export/job/status",
        data='{\n   "jobCode": "SEED-002"\n}',
        headers={"Content-Type": "application/json", "Authorization": f"bearer {token}"},
        timeout=30,
    )
    assert printed.status_code == 200, printed.text
    assert (printed.json()["successful"], printed.json()["status"]) == (True, "SCHEDULED")

    # seed 001: the sender posts to the company's ingest URL, with no job id in it
    secret = "e2e-ingest-secret-0123456789"
    settings_answer = http.post("/api/v1/push-ingest/rotate-secret/", {"secret": secret})
    assert settings_answer.status_code == 200
    path = "/api/v1/push-ingest/" + job["company_id"] + "/"
    assert settings_answer.json()["url"].endswith(path)
    other = http.post("/api/v1/jobs/", {"type": "export", "code": "SEED-001-OTHER"}).json()

    def sender(body: str, *, key: str = secret) -> requests.Response:
        raw = body.encode()
        return requests.post(
            stack.api + path,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "Railz-Signature": seed001.railz_signature(key, raw),
            },
            timeout=30,
        )

    assert sender(seed001.SUCCESS, key="not-the-secret-0123456789").status_code == 401
    # the failed example comes first: kept until the integration registers its push
    early = sender(seed001.FAILED)
    assert early.status_code == 202 and early.json()["status"] == "unmatched"
    registered = http.post(
        f"/api/v1/jobs/{job['id']}/push-correlations/",
        {"push_communication_id": seed001.PUSH_COMMUNICATION_ID},
    )
    assert registered.status_code == 201 and registered.json()["attached"] == 1
    # the success example (the same push id in the seed) is then a repeat on the same job
    again = sender(seed001.SUCCESS)
    assert again.status_code == 200 and again.json()["job_id"] == job["id"]
    # another push of the request, registered on the other job by its requestId
    second = json.loads(seed001.SUCCESS)
    second["data"]["pushCommunicationId"] = "second-push"
    second["requestId"] = "second-request"
    http.post(f"/api/v1/jobs/{other['id']}/push-correlations/", {"request_id": "second-request"})
    landed = sender(json.dumps(second))
    assert landed.status_code == 201 and landed.json()["job_id"] == other["id"]

    mine = http.get(f"/api/v1/jobs/{job['id']}/").json()
    theirs = http.get(f"/api/v1/jobs/{other['id']}/").json()
    assert mine["push_results"] == {"success": 0, "failed": 1}
    assert theirs["push_results"] == {"success": 1, "failed": 0}
    [result] = http.get(f"/api/v1/jobs/{job['id']}/push-results/").json()["results"]
    assert (result["status"], result["source_object_ids"]) == ("failed", ["354"])
    assert result["validation_errors"][0]["field"] == "currencyRef"
