"""The console's delivery list and its created from/before filter, index-backed on PostgreSQL.

``webhook_delivery_created`` gives the list's order (newest first) and serves the window. (The
attempted from/before filter reads a delivery's few attempts by their foreign key's index, or
the attempts in the window by ``webhook_attempt_started``.)

PostgreSQL only, built CONCURRENTLY (no write lock on big tables).
"""

from django.db import migrations

INDEXES = {
    "webhook_delivery_created": "webhooks_webhookdelivery (created_at DESC, id DESC)",
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
        ("webhooks", "0005_attempt_url_and_headers"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
