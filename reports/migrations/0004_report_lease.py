"""The build lease is a ``config.leases`` lease: ``locked_until`` (the lease's end)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('reports', '0003_report_pending_index'),
    ]

    operations = [
        # a build running across the migration reads as free (its start time is past): the
        # worst case is a second build, whose fenced write the first one's then loses
        migrations.RenameField(
            model_name='report',
            old_name='build_started_at',
            new_name='locked_until',
        ),
    ]
