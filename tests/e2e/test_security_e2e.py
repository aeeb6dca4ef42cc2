"""Issue 11's attacks against a real gunicorn: the Procfile's web line, production settings
(``config.settings``, DEBUG off), PostgreSQL, and a private Redis holding the throttle counters
that gunicorn's two worker processes share.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3, …: Linux routes the
whole 127.0.0.0/8 to lo) to be different TCP peers, which is what the throttles and the admin
lockout key on when no proxy is trusted.
"""

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from requests.adapters import HTTPAdapter

from jobs.models import JobStatus
from reports import services as reports
from reports.links import job_report
from tests.e2e import stack
from tests.factories import ApiClientFactory, CompanyFactory, UserFactory, job_in_status
from tests.live import (
    ROOT,
    Processes,
    call_failed,
    free_port,
    redis_answers,
    redis_server_args,
    wait_until,
    web_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

BIN = Path(sys.executable).parent
PASSWORD = "e2e-pass-word-123"
AUTH_LIMIT = 5


def procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("the Procfile has no web line")


class SourceAddress(HTTPAdapter):
    """Connect from a given loopback address (a different client, as the server sees it)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddress(address))
    return session


@dataclass
class Web:
    base: str
    processes: Processes

    def log(self) -> str:
        return self.processes.log("web")


@pytest.fixture
def web_server(
    transactional_db: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Web]]:
    processes = Processes(tmp_path)
    redis_port = free_port()

    def start(**overrides: str) -> Web:
        processes.spawn("redis", redis_server_args(redis_port, tmp_path), env=dict(os.environ))
        wait_until(lambda: redis_answers(redis_port), 20, "redis")
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "JOBTRAIL_", "CELERY_", "DATABASE_", "CACHE_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",  # production settings, DEBUG off
            JOBTRAIL_READ_DOTENV="0",
            DJANGO_SECRET_KEY=settings.SECRET_KEY,  # report links signed here work there
            DATABASE_URL=stack.test_database_url(),
            DJANGO_CONN_MAX_AGE="0",
            CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            CACHE_URL=f"redis://127.0.0.1:{redis_port}/1",
            JOBTRAIL_AUTH_RATE_LIMIT=f"{AUTH_LIMIT}/minute",
            JOBTRAIL_MEDIA_ROOT=str(settings.MEDIA_ROOT),
            JOBTRAIL_PORT=str(port),
            PYTHONUNBUFFERED="1",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **overrides,
        )
        # as a deployment does (the admin's pages need the static files' manifest)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        processes.spawn("web", ["/bin/sh", "-c", procfile_web()], env=env)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: web_ready(base), 60, "gunicorn")
        return Web(base=base, processes=processes)

    try:
        yield start
    finally:
        processes.stop_all(last=["redis"])
        if call_failed(request):
            print(processes.dump_logs(["web", "redis"]))


def with_password(user: Any) -> Any:
    """Store a PBKDF2 hash (what production settings verify; the test settings use MD5)."""
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, secrets.token_hex(8), iterations=1000)
    user.save(update_fields=["password"])
    return user


def plain_http_server(web_server: Callable[..., Web]) -> Web:
    # plain HTTP between the test and gunicorn: no redirect, cookies without the Secure flag
    return web_server(DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_COOKIES="0")


# --- finding 1 -----------------------------------------------------------------------------


def test_forwarded_for_spoofing_does_not_dodge_the_token_and_refresh_throttles(
    web_server: Callable[..., Web],
) -> None:
    web = plain_http_server(web_server)
    user = with_password(ApiClientFactory(company=CompanyFactory(name="Spoofed Co")))
    attacker = client_at("127.0.0.2")
    token_url = f"{web.base}/api/v1/auth/token/"

    statuses = [
        attacker.post(
            token_url,
            json={"username": user.username, "password": f"wrong-{n}"},
            headers={"X-Forwarded-For": f"10.{n}.0.1"},
            timeout=30,
        ).status_code
        for n in range(70)
    ]
    right = attacker.post(
        token_url,
        json={"username": user.username, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.77"},
        timeout=30,
    )

    assert statuses == [401] * AUTH_LIMIT + [429] * (70 - AUTH_LIMIT)
    assert right.status_code == 429 and "access" not in right.json()
    # the real client behind another address is not blocked
    elsewhere = client_at("127.0.0.3").post(
        token_url, json={"username": user.username, "password": PASSWORD}, timeout=30
    )
    assert elsewhere.status_code == 200
    refresh = elsewhere.json()["refresh"]
    refresher = client_at("127.0.0.4")
    refreshed = [
        refresher.post(
            f"{web.base}/api/v1/auth/token/refresh/",
            json={"refresh": refresh},
            headers={"X-Forwarded-For": f"10.{n}.0.2"},
            timeout=30,
        ).status_code
        for n in range(AUTH_LIMIT + 5)
    ]
    assert refreshed == [200] * AUTH_LIMIT + [429] * 5


def test_the_token_endpoint_does_not_confirm_an_admins_password(
    web_server: Callable[..., Web],
) -> None:
    web = plain_http_server(web_server)
    admin = with_password(UserFactory(is_staff=True, is_superuser=True))
    client = client_at("127.0.0.5")

    right = client.post(
        f"{web.base}/api/v1/auth/token/",
        json={"username": admin.username, "password": PASSWORD},
        timeout=30,
    )
    wrong = client.post(
        f"{web.base}/api/v1/auth/token/",
        json={"username": admin.username, "password": "not-it"},
        timeout=30,
    )

    assert right.status_code == wrong.status_code == 401
    assert right.content == wrong.content


# --- finding 5 -----------------------------------------------------------------------------


def admin_login(
    session: requests.Session, base: str, username: str, password: str, xff: str
) -> Any:
    form = session.get(f"{base}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    return session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
        headers={"X-Forwarded-For": xff, "Referer": f"{base}/admin/login/"},
        allow_redirects=False,
        timeout=30,
    )


def test_80_wrong_admin_passwords_from_rotating_forwarded_for_then_the_right_one_is_refused(
    web_server: Callable[..., Web],
) -> None:
    web = plain_http_server(web_server)
    admin = with_password(UserFactory(username="root", is_staff=True, is_superuser=True))
    attacker = client_at("127.0.0.6")

    answers = [
        admin_login(attacker, web.base, admin.username, f"guess-{n}", f"10.{n}.1.1").status_code
        for n in range(80)
    ]
    right = admin_login(attacker, web.base, admin.username, PASSWORD, "203.0.113.1")

    assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
    assert right.status_code == 429 and "Too many failed logins" in right.text
    assert "sessionid" not in right.cookies
    # the account is locked from anywhere until staff lift it (or the cool-off passes)
    elsewhere = admin_login(client_at("127.0.0.7"), web.base, admin.username, PASSWORD, "")
    assert elsewhere.status_code == 429


# --- finding 9: report links in the logs -----------------------------------------------------


def test_signed_report_links_do_not_reach_the_logs(web_server: Callable[..., Web]) -> None:
    web = plain_http_server(web_server)
    job = job_in_status(JobStatus.COMPLETED, company=CompanyFactory(name="Logged Co"))
    report = reports.report_build(job_id=job.pk)
    assert report is not None
    job.refresh_from_db()
    link = reports.download_url(job_report(job))  # type: ignore[arg-type]
    token = link.rstrip("/").rsplit("/", 1)[1]
    path = link.removeprefix(settings.JOBTRAIL_PUBLIC_URL.rstrip("/"))
    client = client_at("127.0.0.8")

    downloaded = client.get(f"{web.base}{path}", timeout=30)
    tampered = client.get(f"{web.base}{path[:-5]}xxxx/", timeout=30)

    assert downloaded.status_code == 200 and downloaded.text.startswith("push_communication_id")
    assert tampered.status_code == 404
    wait_until(lambda: web.log().count("/reports/download/[redacted]/") >= 3, 20, "the logs")
    log = web.log()
    assert token not in log and token[:-4] not in log
    assert re.search(r'"GET /reports/download/\[redacted\]/ HTTP/1.1" 200', log)
    assert re.search(r'"GET /reports/download/\[redacted\]/ HTTP/1.1" 404', log)
    assert "Not Found: /reports/download/[redacted]/" in log  # django.request's line


# --- finding 6: behind a trusted proxy, HTTPS only ---------------------------------------------


def test_behind_one_trusted_proxy_https_is_enforced_and_the_client_is_the_appended_address(
    web_server: Callable[..., Web],
) -> None:
    """The production defaults (SSL redirect, HSTS, secure cookies) with JOBTRAIL_TRUSTED_PROXIES=1:
    the test plays the TLS-terminating proxy, which appends the client's address and sets
    X-Forwarded-Proto."""
    web = web_server(JOBTRAIL_TRUSTED_PROXIES="1")
    user = with_password(ApiClientFactory(company=CompanyFactory(name="Proxied Co")))
    proxy = client_at("127.0.0.9")

    def through_proxy(client: str, spoofed: str = "", **kwargs: Any) -> Any:
        forwarded = f"{spoofed}, {client}" if spoofed else client
        headers = {"X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https"}
        return proxy.post(
            f"{web.base}/api/v1/auth/token/",
            json={"username": user.username, "password": "wrong"},
            headers=headers,
            timeout=30,
            **kwargs,
        )

    plain = proxy.get(f"{web.base}/api/v1/jobs/", allow_redirects=False, timeout=30)
    secure = proxy.get(
        f"{web.base}/api/v1/jobs/", headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    health = proxy.get(f"{web.base}/healthz", timeout=30)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://127.0.0.1:")
    assert secure.status_code == 401
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "default-src 'self'" in secure.headers["Content-Security-Policy"]
    assert health.status_code == 200

    spoofed = [through_proxy("203.0.113.7", f"192.0.2.{n}").status_code for n in range(10)]
    assert spoofed == [401] * AUTH_LIMIT + [429] * (10 - AUTH_LIMIT)
    assert through_proxy("203.0.113.8").status_code == 401  # another client, its own allowance
