"""``Job.last_sequence``: the job's last timeline sequence, kept on the row the event writers
already lock, so numbering the next event reads no events."""

from django.db import migrations, models
from django.db.models import Max, OuterRef, Subquery
from django.db.models.functions import Coalesce


def backfill(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    JobEvent = apps.get_model("jobs", "JobEvent")
    last = (
        JobEvent.objects.filter(job_id=OuterRef("pk"), sequence__isnull=False)
        .values("job_id")
        .annotate(last=Max("sequence"))
        .values("last")
    )
    Job.objects.update(last_sequence=Coalesce(Subquery(last), 0))


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0011_scale_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="last_sequence",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
