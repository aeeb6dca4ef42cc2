from collections.abc import Iterator

import pytest

from webhooks.sending import reset_connections


@pytest.fixture(autouse=True)
def _fresh_connections() -> Iterator[None]:
    """Every test starts without kept-alive connections or checked targets of earlier ones."""
    reset_connections()
    yield
    reset_connections()
