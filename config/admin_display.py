"""Small HTML helpers that keep the console's list columns narrow (readable at 1280 px).

Long machine values stay whole in the DOM (copy-paste gives the exact id or code): ``clipped``
shows the start of one with an ellipsis and the full value as its tooltip; ``breakable`` lets
a code wrap after its separators (``_ . / -``) instead of widening its column; ``pretty_json``
shows a JSON document indented in a collapsible block (a delivery's payload, a job's metadata,
an unmatched push's data).
"""

import json
import re

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

_SEPARATORS = re.compile(r"([_./-])")


def breakable(text: str) -> SafeString:
    """``text`` escaped, with a line-break opportunity (``<wbr>``) after each separator."""
    return mark_safe(_SEPARATORS.sub(r"\1<wbr>", escape(text)))  # escaped above


def clipped(value: object, *, css: str = "jt-id", url: str | None = None) -> SafeString | str:
    """The value cut to its column with an ellipsis, whole in the tooltip (and the DOM)."""
    text = "" if value is None else str(value)
    if not text:
        return "—"
    if url:
        return format_html('<a class="{}" href="{}" title="{}">{}</a>', css, url, text, text)
    return format_html('<span class="{}" title="{}">{}</span>', css, text, text)


def pretty_json(value: object, *, open_: bool = True) -> SafeString:
    """``value`` as indented JSON (keys sorted), escaped, in a ``<details>`` block that
    collapses; its summary gives the compact size in bytes."""
    body = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    size = len(json.dumps(value).encode())
    return format_html(
        '<details{} class="jt-payload"><summary>{} bytes of JSON</summary><pre>{}</pre></details>',
        " open" if open_ else "",
        size,
        body,
    )
