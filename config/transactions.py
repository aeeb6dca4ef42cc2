"""One transaction per API write, and services that join it without savepoints."""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from django.db import transaction

P = ParamSpec("P")
R = TypeVar("R")

_request_transaction: ContextVar[bool] = ContextVar("jobtrail_request_transaction", default=False)


@contextmanager
def request_transaction() -> Iterator[None]:
    """Run an API write (its services, its answer, its idempotency key) in one transaction.

    Any exception rolls the whole block back, so the services called inside it join it with no
    savepoint of their own (``atomic_service``): a savepoint costs two round trips on every
    hot-path write and protects nothing here.
    """
    with transaction.atomic():
        token = _request_transaction.set(True)
        try:
            yield
        finally:
            _request_transaction.reset(token)


def atomic_service(func: Callable[P, R]) -> Callable[P, R]:
    """``transaction.atomic`` for a service, except that it joins a ``request_transaction``.

    Anywhere else (a task, the admin, a test's transaction) the service runs in a transaction,
    or a savepoint, of its own, as ``@transaction.atomic`` would: it commits or rolls back whole.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _request_transaction.get() and transaction.get_connection().in_atomic_block:
            return func(*args, **kwargs)
        with transaction.atomic():
            return func(*args, **kwargs)

    return wrapper
