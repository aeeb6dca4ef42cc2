from tests.conftest import bearer_client

__all__ = ["bearer_client"]
