"""Schemathesis hooks for tests/contract/run_schemathesis.sh (SCHEMATHESIS_HOOKS).

Only values that the server, not the client, owns are replaced; the checks are all on.
"""

import uuid
from typing import Any

import schemathesis

# The stack allows private webhook targets; this one is on loopback and resolves without DNS.
WEBHOOK_URL = "http://127.0.0.1:9/jobtrail-schemathesis"


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """``cursor`` is opaque: only the server issues one (in a page's next/previous URL), so a
    generated string is never a cursor and is rightly refused (400)."""
    if query:
        query.pop("cursor", None)
    return query


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """An Idempotency-Key is a fresh value per distinct request: a generator repeating a key
    with another body gets the documented 422. A well-formed key is replaced by a new UUID (a
    malformed one stays, for the negative checks). A webhook endpoint's ``url`` must resolve
    to an address, which a generated URL never does: a well-formed one is replaced by a
    loopback URL."""
    headers = case.headers or {}
    if isinstance(kwargs.get("headers"), dict):
        headers = kwargs["headers"]  # what is sent (case.headers was copied into it)
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and key.strip() and len(key) <= 255:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    body = case.body
    if (
        case.path.startswith("/api/v1/webhook-endpoints/")
        and isinstance(body, dict)
        and isinstance(body.get("url"), str)
        and 0 < len(body["url"]) <= 2000
        and body["url"].strip()
    ):
        body["url"] = WEBHOOK_URL
