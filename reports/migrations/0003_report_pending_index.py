"""A partial index on pending reports; built CONCURRENTLY on PostgreSQL (no write lock)."""

from django.db import migrations, models

INDEX = models.Index(
    condition=models.Q(("status", "pending")), fields=["updated_at"], name="report_pending"
)


def create_index(apps, schema_editor):
    Report = apps.get_model("reports", "Report")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS report_pending "
            "ON reports_report (updated_at) WHERE status = 'pending'"
        )
    else:
        schema_editor.add_index(Report, INDEX)


def drop_index(apps, schema_editor):
    Report = apps.get_model("reports", "Report")
    schema_editor.remove_index(Report, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("jobs", "0003_admin_indexes"),
        ("reports", "0002_build_lease"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="report", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
