"""Keep signed report links out of the logs.

A report link (``/reports/download/<signed token>/``) works without a bearer token until it
expires, so whoever reads a log line holding one can download the report. The token is replaced
by ``[redacted]`` in gunicorn's access log (``--logger-class config.access_log.AccessLogger``,
in the Procfile and the systemd unit) and in every record of Django's logging
(``RedactReportLinks``, a filter on the console handler: ``django.request`` names the path of a
4xx answer).
"""

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

REPORT_LINK = re.compile(r"(/reports/download/)[^/?#\s\"']+")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    """``text`` with the token of every report link in it replaced."""
    if "/reports/download/" not in text:
        return text
    return REPORT_LINK.sub(REDACTED, text)


class RedactReportLinks(logging.Filter):
    """A logging filter: rewrite a record whose message holds a report link."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted is not message:
            record.msg, record.args = redacted, None
        return True


class AccessLogger(Logger):
    """gunicorn's logger; the access log's atoms (request line, path, referer…) redacted."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if isinstance(value, str) and "/reports/download/" in value:
                atoms[name] = redact(value)
        return atoms
