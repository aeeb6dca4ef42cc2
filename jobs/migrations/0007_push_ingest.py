"""Push results straight from the sender: ingest keys, correlations, unmatched pushes (issue 12)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0006_effected_records_count'),
    ]

    operations = [
        migrations.CreateModel(
            name='PushIngestKey',
            fields=[
                ('company', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='push_ingest_key', serialize=False, to='jobs.company')),
                ('secret', models.CharField(max_length=200)),
                ('previous_secret', models.CharField(blank=True, default='', max_length=200)),
                ('previous_secret_expires_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='PushCorrelation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('push_communication_id', 'Push Communication Id'), ('request_id', 'Request Id')], max_length=32)),
                ('value', models.CharField(max_length=255)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('company', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='jobs.company')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='push_correlations', to='jobs.job')),
            ],
            options={
                'ordering': ['job', 'id'],
                'constraints': [models.UniqueConstraint(fields=('company', 'kind', 'value'), name='push_correlation_unique_per_company')],
            },
        ),
        migrations.CreateModel(
            name='UnmatchedPush',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('push_communication_id', models.CharField(max_length=128)),
                ('request_id', models.CharField(blank=True, default='', max_length=255)),
                ('status', models.CharField(choices=[('success', 'Success'), ('failed', 'Failed')], max_length=16)),
                ('data', models.JSONField()),
                ('received_at', models.DateTimeField(auto_now_add=True)),
                ('attached_at', models.DateTimeField(blank=True, null=True)),
                ('company', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='jobs.company')),
                ('job', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='jobs.job')),
            ],
            options={
                'verbose_name_plural': 'unmatched pushes',
                'ordering': ['-received_at', '-id'],
                'indexes': [models.Index(condition=models.Q(('attached_at__isnull', True)), fields=['company', 'request_id'], name='unmatched_push_waiting')],
                'constraints': [models.UniqueConstraint(fields=('company', 'push_communication_id'), name='unmatched_push_unique')],
            },
        ),
    ]
