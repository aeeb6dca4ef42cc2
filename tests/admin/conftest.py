"""The admin tests' fixtures: a logged-in staff client; for the browser tests, Debian's Chromium
(Playwright), a CSP-checked page, a staff user.

Helpers (login, list and search steps) are in tests/admin/browser.py.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Browser, Page, sync_playwright

from tests.admin.browser import CHROMIUM_ARGS, PASSWORD, csp_checked_page, login


@pytest.fixture
def staff(admin_user: Any) -> Client:
    """Django's test client logged in as a superuser."""
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture(scope="module")
def _orm_inside_playwright_loop() -> Iterator[None]:
    """Playwright's sync API keeps an event loop in this thread; let the ORM run anyway."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def chromium(_orm_inside_playwright_loop: None) -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh page; the test fails if the Content-Security-Policy refused anything."""
    with csp_checked_page(chromium) as fresh:
        yield fresh


@pytest.fixture
def superuser(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser(
        username="staffer", email="staffer@example.com", password=PASSWORD
    )


@pytest.fixture
def admin_page(page: Page, live_server: Any, superuser: Any) -> Page:
    """A page logged in (through the login form) as the superuser."""
    login(page, live_server.url, superuser.username)
    return page
