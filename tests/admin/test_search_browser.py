"""Console v2 in Debian's Chromium: a staff user's time zone, and a job found by its metadata.

Same browser, fixtures and Content-Security-Policy check as tests/admin/test_browser.py (the
fixtures of tests/admin/conftest.py).
"""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from jobs.models import Job
from tests.admin.browser import expect_rows, job_list, search
from tests.factories import CompanyFactory, JobFactory

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_chosen_time_zone_shows_on_every_timestamp(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    job = JobFactory(code="TZ-BROWSER")
    moment = datetime(2026, 7, 1, 22, 15, 9, tzinfo=UTC)  # summer: New York is UTC-4
    Job.objects.filter(pk=job.pk).update(created_at=moment, last_activity_at=moment)

    job_list(page, base)
    created = page.locator("#result_list td.field-created time").first
    expect(created).to_have_text("2026-07-01 22:15:09 UTC")

    page.click("#time-zone-link")
    expect(page).to_have_url(f"{base}/admin/time-zone/")
    page.select_option("#id_time_zone", "America/New_York")
    with page.expect_navigation():
        page.click("#time-zone-form input[type=submit]")
    expect(page.locator(".messagelist li.success")).to_contain_text("America/New_York")
    expect(page.locator("#time-zone-link")).to_have_text("Time zone: America/New_York")
    expect(page.locator("#time-zone-now time")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T \(UTC-0[45]:00\)$")
    )

    job_list(page, base)
    expect(created).to_have_text("2026-07-01 18:15:09 EDT (UTC-04:00)")
    expect(created).to_have_attribute("datetime", "2026-07-01T18:15:09-04:00")
    page.click(f"#result_list a:text-is('{job.code}')")
    expect(page.locator(".field-created_exact time")).to_have_text(
        "2026-07-01 18:15:09 EDT (UTC-04:00)"
    )


def test_a_job_is_found_by_a_metadata_value(admin_page: Page, live_server: Any) -> None:
    page, base = admin_page, live_server.url
    company = CompanyFactory(name="Meta Co")
    wanted = JobFactory(company=company, code="META-1", metadata={"order": {"ref": "SO-1234"}})
    JobFactory(company=company, code="META-2", metadata={"order": {"ref": "SO-9999"}})
    JobFactory(company=company, code="META-3", metadata={})

    job_list(page, base)
    search(page, "meta:order.ref=SO-1234")
    expect_rows(page, wanted)
    search(page, "meta:order.ref=so-1234")  # metadata values match exactly
    expect(page.locator("#result_list tbody tr")).to_have_count(0)
