"""On PostgreSQL the hot statements are prepared once per connection (issue 10).

The hot path's fixed statements (``config.rows.hot_cursor``) bind their parameters on the
server, and psycopg prepares one once a connection has run it ``prepare_threshold`` times;
PostgreSQL then parses and plans it once instead of on every request
(``JOBTRAIL_DB_PREPARE_THRESHOLD``, README "Configuration"). Every other query keeps Django's
client-side binding.
"""

import uuid
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import NotSupportedError, connection

from config.rows import hot_cursor
from jobs.models import Company, Job

NAME_LENGTH = Company._meta.get_field("name").max_length

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
    """``JOBTRAIL_DB_PREPARE_THRESHOLD=none``: nothing prepared (PgBouncer in transaction
    mode without max_prepared_statements); other queries never bind on the server."""
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
    assert "prepare_threshold" not in off
    assert eager["prepare_threshold"] == 0
    assert "server_side_binding" not in eager  # no server-side binding for the ORM


def test_orm_queries_bind_on_the_client_whatever_the_number_of_values() -> None:
    """Only the hot path's fixed statements bind on the server: an ORM ``IN`` list longer than
    libpq's 65,535 parameters (the hourly purge, "redeliver failed since") still runs."""
    ids = [uuid.uuid4() for _ in range(70_000)]

    assert Job.objects.filter(pk__in=ids).count() == 0


def migrate(ddl: str) -> None:
    """Run ``ddl`` as a deploy's migration would: from another connection (process)."""
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as other:
        other.execute(ddl)


@pytest.mark.django_db(transaction=True)
def test_a_connection_whose_prepared_plan_a_migration_changed_is_replaced() -> None:
    """A prepared statement whose result type a migration (another process) altered fails on
    every run ("cached plan must not change result type"); the connection is then closed at
    the end of the request, and the next one prepares the statement afresh."""
    company = Company.objects.create(name="Plan Co")
    sql = 'SELECT "name" FROM "jobs_company" WHERE "id" = %s'
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold + 2):  # prepared once run more than ``threshold`` times
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, [company.pk])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s",
            [sql.replace("%s", "$1")],
        )
        assert cursor.fetchone() == (1,)
    migrate('ALTER TABLE "jobs_company" ALTER COLUMN "name" TYPE text')
    try:
        with (
            pytest.raises(NotSupportedError, match="cached plan must not change result type"),
            hot_cursor(connection) as cursor,
        ):
            cursor.execute(sql, [company.pk])
        assert connection.close_at == 0
        connection.close_if_unusable_or_obsolete()  # what Django does when the request ends
        assert connection.connection is None
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, [company.pk])
            assert cursor.fetchone() == ("Plan Co",)
    finally:
        migrate(f'ALTER TABLE "jobs_company" ALTER COLUMN "name" TYPE varchar({NAME_LENGTH})')
