"""Issue 10: fairness between companies (``fair_at``, claims in its order) and the wake-up row
moving to ``ops.Wakeup`` (one per task). The two partial indexes hold pending rows only; on
PostgreSQL they are built CONCURRENTLY (no write lock on the deliveries)."""

import django.db.models.functions.datetime
from django.db import migrations, models

INDEXES = [
    models.Index(
        condition=models.Q(("status", "pending")), fields=["fair_at"], name="webhook_delivery_fair"
    ),
    models.Index(
        condition=models.Q(("attempts", 0), ("status", "pending")),
        fields=["company", "fair_at"],
        name="webhook_delivery_company_fair",
    ),
]


def create_indexes(apps, schema_editor):
    WebhookDelivery = apps.get_model("webhooks", "WebhookDelivery")
    for index in INDEXES:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(WebhookDelivery, index, concurrently=True)
        else:
            schema_editor.add_index(WebhookDelivery, index)


def drop_indexes(apps, schema_editor):
    WebhookDelivery = apps.get_model("webhooks", "WebhookDelivery")
    for index in INDEXES:
        schema_editor.remove_index(WebhookDelivery, index)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('jobs', '0011_scale_indexes'),
        ('ops', '0003_wakeup'),
        ('webhooks', '0007_delivery_search_indexes'),
    ]

    operations = [
        migrations.DeleteModel(
            name='DeliveryWakeup',
        ),
        # rows that exist get the migration's time: they stand in line together, before new ones
        migrations.AddField(
            model_name='webhookdelivery',
            name='fair_at',
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(model_name="webhookdelivery", index=index) for index in INDEXES
            ],
            database_operations=[migrations.RunPython(create_indexes, drop_indexes)],
        ),
    ]
