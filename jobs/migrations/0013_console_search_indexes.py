"""The console's metadata and external-id searches, index-backed on PostgreSQL (jobs.search).

- ``job_metadata_path``: GIN over the metadata with ``jsonb_path_ops`` (``metadata @> …``);
- ``push_result_communication``, ``push_result_request``: a push result by its push
  communication id or request id (the unique constraint leads with the job);
- ``push_correlation_value``: a registered correlation by its value alone.

PostgreSQL only, built CONCURRENTLY (no write lock on big tables); other databases search
without them.
"""

from django.db import migrations

INDEXES = {
    "job_metadata_path": "jobs_job USING gin (metadata jsonb_path_ops)",
    "push_result_communication": "jobs_pushresult (push_communication_id)",
    "push_result_request": "jobs_pushresult (request_id) WHERE request_id <> ''",
    "push_correlation_value": "jobs_pushcorrelation (value)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, target in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY

    dependencies = [
        ("jobs", "0012_job_last_sequence"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
