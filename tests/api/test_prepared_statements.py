"""On PostgreSQL the hot statements are prepared once per connection (issue 10).

Parameters are bound on the server and psycopg prepares a statement once a connection has run
it ``prepare_threshold`` times; PostgreSQL then parses and plans it once instead of on every
request (``JOBTRAIL_DB_PREPARE_THRESHOLD``, README "Configuration").
"""

from typing import Any

import pytest
from django.conf import settings
from django.db import connection

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

JOBS_URL = "/api/v1/jobs/"


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_api_hot_statements_are_prepared_after_a_few_requests(api: Any) -> None:
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    job_id = api.post(JOBS_URL, {"type": "export"}, format="json").json()["id"]
    api.post(f"{JOBS_URL}{job_id}/events/", {"status": "started"}, format="json")
    for i in range(threshold + 1):
        assert api.post(JOBS_URL, {"type": "export"}, format="json").status_code == 201
        progress = {"effected_records": i, "message": f"{i} pushed"}
        assert api.patch(f"{JOBS_URL}{job_id}/", progress, format="json").status_code == 200
        assert api.get(f"{JOBS_URL}{job_id}/").status_code == 200

    statements = prepared_statements()
    # the poll's one read (token user, company, job), the new job's INSERT, its event's INSERT
    # and the change's UPDATE, each prepared once however many requests ran it
    assert sum('FROM "auth_user" u' in s and 'j."id"' in s for s in statements) >= 1
    assert sum(s.startswith('INSERT INTO "jobs_job"') for s in statements) == 1
    assert sum(s.startswith('INSERT INTO "jobs_jobevent"') for s in statements) == 1
    assert sum(s.startswith('UPDATE "jobs_job" SET') for s in statements) == 1
    assert all("$1" in s for s in statements if s.startswith(("INSERT", "UPDATE")))


def test_prepared_statements_can_be_turned_off_for_poolers(monkeypatch: Any) -> None:
    """``JOBTRAIL_DB_PREPARE_THRESHOLD=none``: client-side binding, nothing prepared (PgBouncer
    in transaction mode without max_prepared_statements)."""
    import importlib

    import config.settings as project_settings

    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:5432/x")
    monkeypatch.setenv("JOBTRAIL_DB_PREPARE_THRESHOLD", "none")
    try:
        off = importlib.reload(project_settings).DATABASES["default"].get("OPTIONS", {})
        monkeypatch.setenv("JOBTRAIL_DB_PREPARE_THRESHOLD", "0")
        eager = importlib.reload(project_settings).DATABASES["default"]["OPTIONS"]
    finally:
        monkeypatch.undo()
        importlib.reload(project_settings)
    assert "server_side_binding" not in off and "prepare_threshold" not in off
    assert eager == {"server_side_binding": True, "prepare_threshold": 0}
