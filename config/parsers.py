"""A JSON parser that refuses what the database or the response could not hold."""

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from . import strict_json
from .problems import unsupported_charset, unsupported_charset_error

# How deep a request's JSON may nest. Python's parser goes as deep as its recursion limit, but
# the code that later encodes the same value (the response, the database's JSON, a webhook
# payload) runs deeper in the stack: a value the parser took could fail there, after it was
# stored, on every read of its job.
MAX_DEPTH = 64


def check_text(value: Any) -> None:
    """Refuse NUL characters and unpaired surrogates anywhere (keys included), and nesting
    deeper than ``MAX_DEPTH``."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL characters are not allowed in text")
            item.encode("utf-8")  # raises on unpaired surrogates
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        if unsupported_charset(encoding):  # ApiProblemMiddleware refuses these first
            raise unsupported_charset_error(encoding)
        try:
            text = stream.read().decode(encoding)
            data = strict_json.loads(text)
            check_text(data)
        except RecursionError:
            # Deeper than the parser could go from where this request's stack stands (a deeper
            # caller reaches the limit sooner): far deeper than MAX_DEPTH either way, so the
            # answer is the same as for a value the parser took.
            raise ParseError(
                f"JSON parse error - nested more than {MAX_DEPTH} levels deep"
            ) from None
        except UnicodeError:
            raise ParseError(
                "JSON parse error - text must be valid UTF-8 (no unpaired surrogates)."
            ) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return data
