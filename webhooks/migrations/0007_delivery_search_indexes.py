"""The console's delivery list and its time windows, index-backed on PostgreSQL.

- ``webhook_delivery_created``: the list's order (newest first), the created window;
- ``webhook_delivery_last_attempt``: the last-attempt window;
- ``webhook_delivery_event_id``: the search by webhook-id (``msg_…``; the unique constraint
  leads with the endpoint), beside the job id's ``webhook_delivery_object`` in one BitmapOr.

PostgreSQL only, built CONCURRENTLY (no write lock on big tables).
"""

from django.db import migrations

INDEXES = {
    "webhook_delivery_created": "webhooks_webhookdelivery (created_at DESC, id DESC)",
    "webhook_delivery_last_attempt": "webhooks_webhookdelivery (last_attempt_at)",
    "webhook_delivery_event_id": "webhooks_webhookdelivery (event_id)",
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
        ("webhooks", "0006_attempt_details_last_attempt_at"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
