"""The console's report list, newest first, reads ``report_created`` (-created_at, -id).

There is a report per finished job: at a million, each page of the list sorted the whole table.
On PostgreSQL the index is built CONCURRENTLY (no lock against the report builds writing to the
table while it is built); an index a failed run left invalid is built again.
"""

from django.db import migrations, models

NAME = "report_created"
COLUMNS = "reports_report (created_at DESC, id DESC)"


def forward(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    if concurrently:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = %s AND NOT i.indisvalid",
                [NAME],
            )
            if cursor.fetchone():  # left invalid by an interrupted run
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {NAME} ON {COLUMNS}")


def backward(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY

    dependencies = [
        ("reports", "0005_report_push_count"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterModelOptions(
                    name="report",
                    options={"ordering": ["-created_at", "-id"]},
                ),
                migrations.AddIndex(
                    model_name="report",
                    index=models.Index(fields=["-created_at", "-id"], name=NAME),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        ),
    ]
