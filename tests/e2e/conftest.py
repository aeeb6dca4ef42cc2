from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from config.periodic import register_periodic_tasks
from tests.e2e.stack import Stack
from tests.factories import ApiClientFactory, CompanyFactory
from tests.receiver import Receiver, running_receiver


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack_env(**variables): environment overrides for the stack's processes"
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


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
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(running.dump_logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


class Http:
    """A requests session against the stack's web process, authenticated as an API client."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def patch(self, path: str, body: Any = None) -> requests.Response:
        return self.session.patch(self.base + path, json=body, timeout=30)


@pytest.fixture
def http(stack: Stack) -> Http:
    user = ApiClientFactory(company=CompanyFactory(name="E2E Co"))
    response = requests.post(
        f"{stack.api}/api/v1/auth/token/",
        json={"username": user.username, "password": "pass-word-123"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return Http(stack.api, response.json()["access"])
