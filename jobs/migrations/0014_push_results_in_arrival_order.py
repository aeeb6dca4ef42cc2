"""A job's push results are listed in the order they came, ``(received_at, id)``.

The list's cursor held the last result's id; ids count every company's push results, so two
of a company's own told it how many other companies recorded in between. The cursor now holds
a time. ``push_result_job_received`` replaces ``push_result_job_id`` for the list, the report
and the failed results a seed-003 message names (built before the old index is dropped, so a
job's results are never read without one).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0013_console_search_indexes"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="pushresult",
            options={"ordering": ["job", "received_at", "id"]},
        ),
        migrations.AddIndex(
            model_name="pushresult",
            index=models.Index(
                fields=["job", "received_at", "id"], name="push_result_job_received"
            ),
        ),
        migrations.RemoveIndex(
            model_name="pushresult",
            name="push_result_job_id",
        ),
    ]
