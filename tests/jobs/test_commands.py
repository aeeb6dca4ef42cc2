"""Management commands and settings a newcomer meets first."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate as django_authenticate
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from jobs.models import Company, Job, JobEvent, JobStatus, PushResult

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def authenticate(**credentials: str) -> object:
    """Log in as the admin's login form does (django-axes wants the request)."""
    return django_authenticate(RequestFactory().post("/admin/login/"), **credentials)


def _run(*args: str, **kwargs: object) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_create_api_client_prints_working_credentials() -> None:
    out = _run("create_api_client", "Acme Books", "acme-int")
    password = next(line.split()[-1] for line in out.splitlines() if line.startswith("password"))
    company = Company.objects.get(name="Acme Books")
    assert f"company_id: {company.pk}" in out
    user = authenticate(username="acme-int", password=password)
    assert user is not None
    assert user.company_membership.company == company  # type: ignore[union-attr]
    assert not user.is_staff


def test_create_api_client_reuses_the_company_and_sets_a_given_password() -> None:
    _run("create_api_client", "Acme Books", "first", password="first-pass-123")
    out = _run("create_api_client", "Acme Books", "second", password="second-pass-123")
    assert "Created company" not in out
    assert Company.objects.filter(name="Acme Books").count() == 1
    assert authenticate(username="second", password="second-pass-123") is not None


def test_create_api_client_refuses_a_user_of_another_company() -> None:
    _run("create_api_client", "Acme Books", "shared-name")
    with pytest.raises(CommandError, match="does not belong"):
        _run("create_api_client", "Other Co", "shared-name", password="x-pass-123")
    with pytest.raises(CommandError, match="already exists"):
        _run("create_api_client", "Acme Books", "shared-name")


def test_seed_demo_fills_every_state_once() -> None:
    out = _run("seed_demo", jobs=24)
    assert "Demo API client: username demo" in out
    statuses = set(Job.objects.values_list("status", flat=True))
    assert statuses == set(JobStatus.values)
    assert Job.objects.filter(failure_reason="canceled_by_user").exists()
    assert PushResult.objects.filter(status="failed").exists()
    assert JobEvent.objects.filter(status="progress").exists()
    assert Company.objects.count() == 2

    again = _run("seed_demo", jobs=24)
    assert "already present" in again
    assert Job.objects.count() == 24


def test_ensure_admin_creates_a_superuser_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    out = _run("ensure_admin")
    password = out.split(" / ")[1].split()[0]
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser and user.is_staff
    assert "exists" in _run("ensure_admin")

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "chosen-pass-123")
    _run("ensure_admin")
    assert authenticate(username="admin", password="chosen-pass-123") is not None


def _settings_import(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "JOBTRAIL_"))}
    clean.update(env, JOBTRAIL_READ_DOTENV="0", DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('ok')"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key() -> None:
    refused = _settings_import({"DJANGO_DEBUG": "0"})
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in refused.stderr
    strong = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMN"
    assert _settings_import({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": strong}).returncode == 0
    assert _settings_import({"DJANGO_DEBUG": "1"}).returncode == 0


def test_models_and_migrations_agree() -> None:
    _run("makemigrations", "--check", "--dry-run")
