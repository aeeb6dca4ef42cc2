"""Root pytest configuration: skip PostgreSQL/Redis-only tests on the embedded defaults."""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection


def on_postgres() -> bool:
    return connection.vendor == "postgresql"  # Django's backend or config.postgresql


def on_redis() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))


CHROMIUM = Path("/usr/bin/chromium")
SSCONVERT = shutil.which("ssconvert")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    skip_redis = pytest.mark.skip(reason="needs Redis: set CELERY_BROKER_URL=redis://...")
    # Locally, browser tests wait for Chromium to be installed; in CI (which installs it) a
    # missing browser must fail, not skip.
    skip_browser = pytest.mark.skip(reason="needs Chromium: apt-get install chromium")
    no_browser = not CHROMIUM.exists() and not os.environ.get("CI")
    skip_spreadsheet = pytest.mark.skip(reason="needs Gnumeric: apt-get install gnumeric")
    no_spreadsheet = SSCONVERT is None and not os.environ.get("CI")
    # markers, not keywords: a parametrized id such as [redis] is a keyword too
    for item in items:
        if item.get_closest_marker("browser") and no_browser:
            item.add_marker(skip_browser)
        if item.get_closest_marker("spreadsheet") and no_spreadsheet:
            item.add_marker(skip_spreadsheet)
        if item.get_closest_marker("postgres") and not on_postgres():
            item.add_marker(skip_pg)
        if item.get_closest_marker("redis") and not on_redis():
            item.add_marker(skip_redis)
