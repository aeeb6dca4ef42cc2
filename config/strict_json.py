"""JSON as the standard has it: Python's ``json.loads`` also reads ``NaN``, ``Infinity`` and
numbers too large for a float (``1e999`` becomes infinity), which neither JSON, PostgreSQL's
jsonb nor a response can hold, and lets a repeated member name silently win over the first (RFC
8259 §4: such a document's meaning is unpredictable; a proxy or log reading the first would see
another request than the one applied). Used by the API's parser, the idempotency fingerprint,
seed 002's poll and the console's ``meta:`` search.
"""

import json
import math
from typing import Any


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the member name {name[:40]!r} appears more than once")
            seen.add(name)
    return members


def loads(text: str | bytes) -> Any:
    """``json.loads`` refusing NaN, Infinity, out-of-range numbers and repeated member names
    in an object (``ValueError``)."""
    return json.loads(
        text,
        parse_float=_finite_float,
        parse_constant=_no_constants,
        object_pairs_hook=_unique_names,
    )
