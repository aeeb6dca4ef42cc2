"""Push result counts live on the job; existing jobs get theirs counted once, set-based."""

from django.db import migrations, models
from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

POSTGRES_BACKFILL = """
UPDATE jobs_job AS job
SET push_success_count = counts.success, push_failed_count = counts.failed
FROM (
    SELECT job_id,
           COUNT(*) FILTER (WHERE status = 'success') AS success,
           COUNT(*) FILTER (WHERE status = 'failed') AS failed
    FROM jobs_pushresult
    GROUP BY job_id
) AS counts
WHERE job.id = counts.job_id
"""


def backfill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKFILL)
        return
    Job = apps.get_model("jobs", "Job")
    PushResult = apps.get_model("jobs", "PushResult")

    def counted(status):
        rows = (
            PushResult.objects.filter(job=OuterRef("pk"), status=status)
            .order_by()
            .values("job")
            .annotate(n=Count("*"))
            .values("n")
        )
        return Coalesce(Subquery(rows, output_field=IntegerField()), 0)

    Job.objects.filter(Exists(PushResult.objects.filter(job=OuterRef("pk")))).update(
        push_success_count=counted("success"), push_failed_count=counted("failed")
    )


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0004_jobevent_outbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="push_success_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="job",
            name="push_failed_count",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
