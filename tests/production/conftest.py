"""Fixtures of the production suite: one PostgreSQL cluster per session, a stack per test."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import call_failed
from tests.production.stack import (
    PostgresCluster,
    ProductionStack,
    ensure_runtime_venv,
    migrate_template,
)

TEMPLATE = "jobtrail_template"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private cluster with a migrated template database (and an API client in it)."""
    ensure_runtime_venv()
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        migrate_template(cluster, TEMPLATE)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> str:
    """Which broker the stack uses: "redis" unless a test parametrizes it (indirect)."""
    return getattr(request, "param", "redis")


@pytest.fixture
def stack(
    postgres: PostgresCluster, broker: str, request: pytest.FixtureRequest
) -> Iterator[ProductionStack]:
    workdir = Path(tempfile.mkdtemp(prefix="jobtrail-prod-"))
    if not postgres.running():  # a test that stopped it failed before starting it again
        postgres.start()
    database = "jobtrail_" + workdir.name.rsplit("-", 1)[-1].lower()
    postgres.execute(f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}"')
    running = ProductionStack(workdir=workdir, pg=postgres, database=database, broker_name=broker)
    started = False
    try:
        running.start()
        started = True
        yield running
    finally:
        running.stop()
        if not started or call_failed(request):
            print(running.dump_logs())
        shutil.rmtree(workdir, ignore_errors=True)
