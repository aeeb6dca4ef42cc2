from collections.abc import Iterator
from pathlib import Path

import pytest

from config.periodic import register_periodic_tasks
from tests.e2e.stack import Stack
from tests.factories import ApiClientFactory, CompanyFactory
from tests.live import Http, call_failed, obtain_token


@pytest.fixture
def stack(
    transactional_db: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    register_periodic_tasks()
    marker = request.node.get_closest_marker("stack_env")
    overrides = marker.kwargs if marker else {}
    running = Stack(workdir=tmp_path, env_overrides=overrides)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        if call_failed(request):
            print(running.dump_logs())


@pytest.fixture
def http(stack: Stack) -> Http:
    user = ApiClientFactory(company=CompanyFactory(name="E2E Co"))
    return Http(stack.api, obtain_token(stack.api, user.username, "pass-word-123"))
