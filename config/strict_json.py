"""JSON as the standard has it: Python's ``json.loads`` also reads ``NaN``, ``Infinity`` and
numbers too large for a float (``1e999`` becomes infinity), which neither JSON, PostgreSQL's
jsonb nor a response can hold. Used by the API's parser and by the console's ``meta:`` search.
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


def loads(text: str) -> Any:
    """``json.loads`` refusing NaN, Infinity and out-of-range numbers (``ValueError``)."""
    return json.loads(text, parse_float=_finite_float, parse_constant=_no_constants)
