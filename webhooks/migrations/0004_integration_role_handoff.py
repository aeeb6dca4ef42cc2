"""Integration endpoints (role) and their hand-off deliveries (issue 12)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0003_delivery_event_unique'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookdelivery',
            name='handoff',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='role',
            field=models.CharField(choices=[('subscriber', 'Subscriber'), ('integration', 'Integration')], db_default='subscriber', default='subscriber', max_length=16),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='events',
            field=models.JSONField(blank=True, default=list, help_text='Event ids or patterns: "jobs.completed", "jobs.*", "*".'),
        ),
        migrations.AddConstraint(
            model_name='webhookendpoint',
            constraint=models.UniqueConstraint(condition=models.Q(('role', 'integration')), fields=('company',), name='webhook_endpoint_one_integration', violation_error_message='This company already has an integration endpoint.'),
        ),
    ]
