"""Issue 11, findings 6, 7 and 9 (/healthz): production transport settings, the Content-Security-
Policy, the leftover .env, the secret key, and what /healthz tells whom."""

import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from config.celery_app import app as celery_app
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "env-key-" + secrets.token_urlsafe(48)


# --- finding 7: the leftover .env and the secret key --------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of the settings (config/settings.py and the metrics folder's setup it calls
    first, beside a manage.py), nothing else."""
    (tmp_path / "config").mkdir()
    for name in ("settings.py", "metrics_dir.py"):
        shutil.copy2(ROOT / "config" / name, tmp_path / "config" / name)
    (tmp_path / "config" / "__init__.py").write_text("")
    (tmp_path / "manage.py").write_text("")
    return tmp_path


MAKE_RUN_DOTENV = (
    "DJANGO_DEBUG=1\n"
    "DJANGO_SECRET_KEY=dotenv-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG\n"
    "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS=1\n"
)
SHOW = (
    "import config.settings as s; "
    "print(s.DEBUG, s.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS, s.SECRET_KEY)"
)


def settings_of(checkout: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "JOBTRAIL_", "DATABASE_", "CELERY_", "CACHE_"))
    }
    return subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=checkout,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_leftover_dotenv_cannot_switch_a_configured_process_into_debug(checkout: Path) -> None:
    """Production's environment carries DJANGO_SECRET_KEY: the .env `make run` wrote is then
    not read at all, so it neither turns DEBUG on nor lifts the SSRF guard."""
    (checkout / ".env").write_text(MAKE_RUN_DOTENV)

    run = settings_of(checkout, DJANGO_SECRET_KEY=STRONG_KEY)

    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False", STRONG_KEY]


def test_the_dotenv_still_configures_a_local_run(checkout: Path) -> None:
    """`make run` and manage.py on a developer's machine: no key in the environment."""
    (checkout / ".env").write_text(MAKE_RUN_DOTENV)

    run = settings_of(checkout)

    assert run.returncode == 0, run.stderr
    debug, private, key = run.stdout.split()
    assert (debug, private) == ("True", "True")
    assert key.startswith("dotenv-key-")


def test_the_units_setting_never_reads_the_dotenv(checkout: Path) -> None:
    (checkout / ".env").write_text(MAKE_RUN_DOTENV)

    run = settings_of(checkout, JOBTRAIL_READ_DOTENV="0")

    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in run.stderr


def test_debug_without_a_key_uses_a_key_of_this_checkout_never_a_public_one(
    checkout: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = settings_of(checkout, DJANGO_DEBUG="1")
    again = settings_of(checkout, DJANGO_DEBUG="1")

    assert first.returncode == 0, first.stderr
    key = first.stdout.split()[2]
    assert again.stdout.split()[2] == key  # sessions survive a restart
    assert len(key) >= 50 and "insecure" not in key
    stored = checkout / "var" / "dev-secret-key"
    assert stored.read_text() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    other = tmp_path_factory.mktemp("other-checkout")
    shutil.copytree(checkout / "config", other / "config")
    (other / "manage.py").write_text("")
    assert settings_of(other, DJANGO_DEBUG="1").stdout.split()[2] != key


@pytest.mark.parametrize(
    "key",
    [
        "change-me-to-50-random-characters",  # deploy/jobtrail.env.example's placeholder
        "django-insecure-" + "x1y2z3" * 10,
        "a" * 80,
        "short-but-varied-0123456789",
        # a fixed id: pytest-xdist's workers must collect the same test names
        pytest.param("change-me-" + secrets.token_urlsafe(50), id="change-me-then-random"),
    ],
)
def test_production_refuses_to_start_with_a_weak_secret_key(checkout: Path, key: str) -> None:
    run = settings_of(checkout, DJANGO_SECRET_KEY=key)

    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY is" in run.stderr
    assert key not in run.stderr  # the refusal does not print the key


# --- finding 6: transport settings and the Content-Security-Policy ------------------------------


def test_check_deploy_has_no_warning_under_the_documented_production_configuration() -> None:
    """.ci/check-deploy (a CI step): deploy/jobtrail.env.example, check --deploy, any warning
    fails. The control below proves the script does fail on a warning."""
    script = ROOT / ".ci" / "check-deploy"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues" in run.stdout


def test_check_deploy_does_warn_when_hsts_is_switched_off(tmp_path: Path) -> None:
    lines = (ROOT / "deploy" / "jobtrail.env.example").read_text().splitlines()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for line in lines:
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update(DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_SECURE_HSTS_SECONDS="0")
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "security.W004" in run.stderr + run.stdout


def test_one_trusted_proxy_turns_the_secure_proxy_header_on(checkout: Path) -> None:
    show = "import config.settings as s; print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None))"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBTRAIL_"))}

    def proxy_header(**env: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", show],
            cwd=checkout,
            env={**base, "DJANGO_SECRET_KEY": STRONG_KEY, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert proxy_header() == "None"
    assert proxy_header(JOBTRAIL_TRUSTED_PROXIES="1") == "('HTTP_X_FORWARDED_PROTO', 'https')"
    assert proxy_header(JOBTRAIL_TRUSTED_PROXIES="1", DJANGO_SECURE_PROXY_SSL_HEADER="0") == "None"


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https_and_https_gets_hsts(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True  # the production default (tests speak plain HTTP)

    plain = Client().get("/api/v1/jobs/?status=pending")
    health = Client().get("/healthz")
    secure = Client().get("/api/v1/jobs/", secure=True)

    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/api/v1/jobs/?status=pending"
    assert health.status_code == 200  # a load balancer's check may come over HTTP
    assert secure.status_code == 401
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/", "/api/v1/jobs/", "/healthz"])
def test_every_page_carries_the_content_security_policy(path: str) -> None:
    response = Client().get(path)

    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]


# --- finding 9: /healthz and exception text ----------------------------------------------------


@pytest.fixture
def broker_down() -> Any:
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    yield
    celery_app.conf.broker_url = previous


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_what_failed_but_no_exception_text(
    broker_down: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "error"},
    }
    assert b"127.0.0.1" not in response.content and b"Error" not in response.content


@pytest.mark.django_db
def test_healthz_detail_is_for_staff_and_the_operations_token(
    broker_down: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    settings.JOBTRAIL_OPS_TOKEN = "ops-token-0123456789"
    staff = Client()
    staff.force_login(UserFactory(is_staff=True))
    customer = Client()
    customer.force_login(UserFactory(is_staff=False))

    for client, headers, detailed in [
        (staff, {}, True),
        (Client(), {"Authorization": "Bearer ops-token-0123456789"}, True),
        (Client(), {"Authorization": "Bearer wrong-token"}, False),
        (customer, {}, False),
    ]:
        broker = client.get("/healthz", headers=headers).json()["checks"]["broker"]
        assert broker.startswith("error: ") is detailed, (headers, broker)


@pytest.mark.django_db
def test_the_cached_policy_is_the_one_django_csp_builds(settings: Any) -> None:
    from csp.utils import build_policy

    assert Client().get("/api/v1/jobs/")["Content-Security-Policy"] == build_policy()
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    assert Client().get("/api/v1/jobs/")["Content-Security-Policy"] == "default-src 'none'"


def test_a_response_that_changes_the_policy_still_gets_its_own() -> None:
    from csp.decorators import csp_update
    from django.http import HttpResponse
    from django.test import RequestFactory

    from config.middleware import SitePolicyCSPMiddleware

    @csp_update({"img-src": ["https://img.example"]})
    def view(request: Any) -> HttpResponse:
        return HttpResponse("ok")

    request = RequestFactory().get("/somewhere")
    middleware = SitePolicyCSPMiddleware(view)

    response = middleware(request)

    assert "img-src 'self' data: https://img.example" in response["Content-Security-Policy"]


def test_a_vanished_database_host_fails_within_a_minute_not_the_kernels_fifteen(
    checkout: Path,
) -> None:
    """Connect timeout, keepalives and a TCP user timeout on every PostgreSQL connection; the
    URL's query string can change each."""
    show = "import config.settings as s; print(sorted(s.DATABASES['default']['OPTIONS'].items()))"
    url = "postgres://postgres@127.0.0.1:5432/x"

    def options(query: str = "") -> str:
        run = subprocess.run(
            [sys.executable, "-c", show],
            cwd=checkout,
            env={**os.environ, "DATABASE_URL": url + query},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    default = options()
    for expected in ("('connect_timeout', 5)", "('keepalives', 1)", "('tcp_user_timeout', 60000)"):
        assert expected in default
    assert "('connect_timeout', 10)" in options("?connect_timeout=10")
