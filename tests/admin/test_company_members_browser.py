"""A company's members in Debian's Chromium: the user autocomplete labelled from the rows.

``KnownLabelAutocomplete`` renders each member's selected user without a query per row
(tests/admin/test_query_counts.py); here select2 shows those users and still adds one.
Same browser, fixtures and Content-Security-Policy check as the other browser tests
(tests/admin/conftest.py).
"""

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.factories import ApiClientFactory, CompanyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_members_show_their_users_and_a_new_one_is_added(
    admin_page: Page, live_server: Any
) -> None:
    page = admin_page
    company = CompanyFactory(name="Acme members")
    members = [ApiClientFactory(company=company, username=f"client-{n}") for n in range(3)]
    UserFactory(username="newcomer-7")

    page.goto(f"{live_server.url}/admin/jobs/company/{company.pk}/change/")
    rendered = page.locator("#members-group td.field-user .select2-selection__rendered")
    expect(rendered).to_have_count(3)
    shown = " ".join(rendered.all_inner_texts())
    assert all(user.username in shown for user in members), shown

    page.locator("#members-group .add-row a").click()
    page.locator("#members-3 td.field-user .select2-selection").click()
    page.locator(".select2-search__field").fill("newcomer")
    page.locator(".select2-results__option", has_text="newcomer-7").click()
    page.locator("input[name=_save]").click()

    expect(page.locator("ul.messagelist li.success")).to_be_visible()
    usernames = set(company.members.values_list("user__username", flat=True))
    assert usernames == {"client-0", "client-1", "client-2", "newcomer-7"}
