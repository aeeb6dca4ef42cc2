"""Console v2 (issue 13): pretty JSON on the job and unmatched-push pages, exact stuck times."""

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import dashboard
from jobs.models import Job, JobStatus, PushResult, UnmatchedPush
from tests.factories import CompanyFactory, JobFactory, job_in_status

pytestmark = pytest.mark.django_db

NASTY = {"note": "<script>alert(1)</script>", "nested": {"b": [1, 2], "a": "x & y"}}


def _json_block(html: str, field: str) -> str:
    row = html[html.index(f"field-{field}") :]
    block = row[row.index("<details") :]
    return block[: block.index("</details>") + len("</details>")]


def _assert_pretty_and_escaped(block: str) -> None:
    assert block.startswith('<details open class="jt-payload"><summary>')  # collapsible
    assert "bytes of JSON</summary><pre>" in block
    # indented, keys sorted: the same rendering as a delivery's payload
    assert "\n  &quot;nested&quot;: {\n    &quot;a&quot;: &quot;x &amp; y&quot;," in block
    assert "\n    &quot;b&quot;: [\n      1,\n      2\n    ]" in block
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert "<script>" not in block


def test_the_job_page_shows_its_metadata_pretty_escaped_and_collapsible(staff: Client) -> None:
    job = JobFactory(metadata=NASTY)
    html = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    _assert_pretty_and_escaped(_json_block(html, "metadata_pretty"))
    assert "<script>alert(1)" not in html


def test_the_unmatched_push_page_shows_its_data_pretty_escaped_and_collapsible(
    staff: Client,
) -> None:
    push = UnmatchedPush.objects.create(
        company=CompanyFactory(), push_communication_id="p1", status="success", data=NASTY
    )
    html = staff.get(reverse("admin:jobs_unmatchedpush_change", args=[push.pk])).content.decode()
    _assert_pretty_and_escaped(_json_block(html, "data_pretty"))
    assert "<script>alert(1)" not in html


def test_the_stuck_table_shows_exact_times_with_zone_and_relative(
    staff: Client, admin_user: Any
) -> None:
    job = job_in_status(JobStatus.PROCESSING)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    Job.objects.filter(pk=job.pk).update(last_activity_at=moment)

    html = staff.get(reverse("admin:index")).content.decode()
    stuck = html[html.index('id="stuck-jobs"') : html.index('id="jobs-24h"')]
    assert job.code in stuck
    assert '<time datetime="2026-01-02T03:04:05+00:00">2026-01-02 03:04:05 UTC</time>' in stuck
    assert re.search(r'<span class="jt-ago">\(\d.*ago\)</span>', stuck)

    # in the staff user's own zone, like the rest of the console
    staff.post(reverse("admin:time_zone"), {"time_zone": "Asia/Kolkata"})
    html = staff.get(reverse("admin:index")).content.decode()
    stuck = html[html.index('id="stuck-jobs"') : html.index('id="jobs-24h"')]
    assert ">2026-01-02 08:34:05 IST (UTC+05:30)</time>" in stuck


def test_the_dashboard_counts_and_its_links_agree_in_any_staff_time_zone(
    staff: Client, admin_user: Any
) -> None:
    """The 24-hour chart truncated hours in the staff user's zone but keyed its buckets by UTC
    hours (0 jobs shown in a half-hour zone such as Asia/Kolkata); the trend legend's links
    wrote their start without an offset, which the job list reads in the staff user's zone
    (New York: 5 hours later, so its link listed fewer jobs than the legend counted)."""
    jobs = [JobFactory() for _ in range(3)]
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(
        created_at=timezone.now() - timedelta(hours=22)
    )
    for name in ("Asia/Kolkata", "America/New_York"):
        staff.post(reverse("admin:time_zone"), {"time_zone": name})
        with timezone.override(ZoneInfo(name)):
            chart = dashboard._chart(timezone.now())
            trend = dashboard._job_trend(timezone.now(), dashboard.window_of("24h"))
        assert chart["total"] == 3, name
        [pending] = [item for item in chart["legend"] if item["status"] == JobStatus.PENDING]
        assert staff.get(pending["url"]).context["cl"].result_count == 3, name
        [pending] = [item for item in trend["legend"] if item["outcome"] == JobStatus.PENDING]
        assert pending["count"] == 3, name
        assert staff.get(pending["url"]).context["cl"].result_count == 3, name


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("Asia/Kolkata", datetime(9999, 12, 31, 23, 0, tzinfo=UTC)),
        ("America/New_York", datetime(1, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_a_time_the_staff_zone_cannot_hold_is_shown_in_utc(
    staff: Client, admin_user: Any, zone: str, moment: datetime
) -> None:
    """The API takes requestedOn 9999-12-31T23:00Z; in a zone east of UTC its local time is
    past year 9999 and the push result's page answered 500 (OverflowError)."""
    job = job_in_status(JobStatus.PROCESSING)
    result = PushResult.objects.create(
        job=job, push_communication_id="far", status="success", requested_on=moment
    )
    staff.post(reverse("admin:time_zone"), {"time_zone": zone})

    response = staff.get(reverse("admin:jobs_pushresult_change", args=[result.pk]))

    assert response.status_code == 200
    assert f"{moment:%Y-%m-%d %H:%M:%S} UTC" in response.content.decode()
