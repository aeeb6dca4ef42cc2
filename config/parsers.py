"""A JSON parser that refuses what the database or the response could not hold."""

import json
import math
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .problems import unsupported_charset, unsupported_charset_error


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_text(value: Any) -> None:
    """Refuse NUL characters and unpaired surrogates anywhere (keys included)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL characters are not allowed in text")
            item.encode("utf-8")  # raises on unpaired surrogates
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        if unsupported_charset(encoding):  # ApiProblemMiddleware refuses these first
            raise unsupported_charset_error(encoding)
        try:
            text = stream.read().decode(encoding)
            data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constants)
            check_text(data)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        except UnicodeError:
            raise ParseError(
                "JSON parse error - text must be valid UTF-8 (no unpaired surrogates)."
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return data
