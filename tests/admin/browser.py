"""Helpers for the console's browser tests (Playwright in Debian's Chromium).

The fixtures built on them (``chromium``, ``page``, ``superuser``, ``admin_page``) are in
tests/admin/conftest.py.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_plus

from playwright.sync_api import Browser, Page, expect

from jobs.models import Job

PASSWORD = "browser-pass-word-123"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROWS = "#result_list tbody tr"
ROW_CODES = "#result_list tbody th.field-code a"


@contextmanager
def csp_checked_page(chromium: Browser, **context_options: Any) -> Iterator[Page]:
    """A fresh page in its own context. Fails if the browser refused anything under the pages'
    Content-Security-Policy (an inline script or style, a foreign source): the whole staff
    console is exercised under the policy production sends."""
    context = chromium.new_context(**context_options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert refused == [], "the Content-Security-Policy blocked something"


def login(page: Page, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form input[type=submit]")
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.locator("#user-tools")).to_contain_text(username)


def job_list(page: Page, base: str, query: str = "") -> None:
    page.goto(f"{base}/admin/jobs/job/{query}")
    expect(page.locator("#changelist")).to_be_visible()


def listed_codes(page: Page) -> set[str]:
    page.wait_for_load_state()
    return set(page.locator(ROW_CODES).all_inner_texts())


def expect_rows(page: Page, *jobs: Job) -> None:
    """The list shows exactly these jobs (waits for the page, then compares codes)."""
    expect(page.locator(ROWS)).to_have_count(len(jobs))
    assert listed_codes(page) == {job.code for job in jobs}


def search(page: Page, term: str) -> None:
    page.fill("#searchbar", term)
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    expect(page).to_have_url(re.compile(rf"[?&]q={re.escape(quote_plus(term))}(&|$)"))
    expect(page.locator("#searchbar")).to_have_value(term)


def run_action(page: Page, action: str) -> None:
    page.select_option("select[name=action]", action)
    page.click(".actions button[name=index]")


def success_message(page: Page, level: str = "success") -> str:
    """The one admin message on the page, checked to be of ``level`` (success, info)."""
    message = page.locator(".messagelist li")
    expect(message).to_have_count(1)
    expect(message).to_have_class(level)
    return message.inner_text()
