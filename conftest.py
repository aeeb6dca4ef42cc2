"""Root pytest configuration: skip PostgreSQL/Redis-only tests on the embedded defaults."""

import pytest
from django.conf import settings


def on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def on_redis() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://...")
    skip_redis = pytest.mark.skip(reason="needs Redis: set CELERY_BROKER_URL=redis://...")
    for item in items:
        if "postgres" in item.keywords and not on_postgres():
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not on_redis():
            item.add_marker(skip_redis)
