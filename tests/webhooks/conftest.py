from collections.abc import Iterator

import pytest

from tests.receiver import Receiver, running_receiver
from webhooks.sending import reset_connections


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def _fresh_connections() -> Iterator[None]:
    """Every test starts without kept-alive connections or checked targets of earlier ones."""
    reset_connections()
    yield
    reset_connections()
