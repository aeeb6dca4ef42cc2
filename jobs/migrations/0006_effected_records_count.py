"""``effected_records`` counts the records actually affected (seed 003): 0, never null."""

from django.db import migrations, models


def zero_unreported(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    Job.objects.filter(effected_records__isnull=True).update(effected_records=0)


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0005_job_push_counts"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="job",
            name="job_effected_lte_total",
        ),
        migrations.RunPython(zero_unreported, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="job",
            name="effected_records",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("total_records__isnull", True),
                    ("effected_records__lte", models.F("total_records")),
                    _connector="OR",
                ),
                name="job_effected_lte_total",
            ),
        ),
    ]
