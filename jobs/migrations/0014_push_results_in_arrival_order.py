"""A job's push results are listed in the order they came, ``(received_at, id)``.

The list's cursor held the last result's id; ids count every company's push results, so two
of a company's own told it how many other companies recorded in between. The cursor now holds
a time. ``push_result_job_received`` replaces ``push_result_job_id`` for the list, the report
and the failed results a seed-003 message names.

On PostgreSQL both steps run CONCURRENTLY (no lock against writes on a table that holds every
company's push results: a plain CREATE INDEX blocked push results, and the job rows their
writers lock, until it was built), the new index built before the old one goes, so a job's
results are never read without one. An index a failed run left invalid is built again.
"""

from django.db import migrations, models

NEW, OLD = "push_result_job_received", "push_result_job_id"
COLUMNS = "jobs_pushresult (job_id, received_at, id)"


def forward(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    if concurrently:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = %s AND NOT i.indisvalid",
                [NEW],
            )
            if cursor.fetchone():  # left invalid by an interrupted run
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NEW}")
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {NEW} ON {COLUMNS}")
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {OLD}")


def backward(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f"CREATE INDEX {concurrently}IF NOT EXISTS {OLD} ON jobs_pushresult (job_id, id)"
    )
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NEW}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY

    dependencies = [
        ("jobs", "0013_console_search_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterModelOptions(
                    name="pushresult",
                    options={"ordering": ["job", "received_at", "id"]},
                ),
                migrations.AddIndex(
                    model_name="pushresult",
                    index=models.Index(fields=["job", "received_at", "id"], name=NEW),
                ),
                migrations.RemoveIndex(model_name="pushresult", name=OLD),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        ),
    ]
