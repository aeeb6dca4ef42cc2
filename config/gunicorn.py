"""gunicorn settings (``-c python:config.gunicorn``): metrics bookkeeping of the web workers,
and problem documents for the requests gunicorn refuses itself.

The master never loads Django; it sets ``PROMETHEUS_MULTIPROC_DIR`` here, before anything
imports prometheus-client, so every worker it forks (and re-forks) writes its samples there.
"""

import json
from typing import Any

from gunicorn import util

from config import metrics_dir

metrics_dir.configure()

# What gunicorn answers before Jobtrail sees the request (a request line over 4094 bytes, a
# header over 8190 bytes or more than 100 of them, a malformed header or Content-Length):
# a problem document like every other error (config.problems), not its HTML page.
GUNICORN_PROBLEMS = {  # status: (code, title), titles as config.problems writes them
    400: ("malformed_request", "Bad request"),
    403: ("forbidden", "Forbidden"),
    414: ("uri_too_long", "URI too long"),
    417: ("expectation_failed", "Expectation failed"),
    431: ("headers_too_large", "Request header fields too large"),
    500: ("server_error", "Server error"),
    501: ("not_implemented", "Not implemented"),
}


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error``'s signature, writing ``application/problem+json``."""
    code, title = GUNICORN_PROBLEMS.get(
        status_int, ("bad_request", reason) if status_int < 500 else ("server_error", reason)
    )
    body = json.dumps(
        {
            "type": f"/problems/{code}",
            "title": title,
            "status": status_int,
            "detail": mesg or "Something went wrong on our side.",
            "code": code,
        }
    ).encode()  # ASCII: json.dumps escapes the rest
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn's workers call util.write_error by its module name (gunicorn.workers.base)
util.write_error = write_problem


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live gauges' files (its counters and histograms stay)."""
    from prometheus_client import multiprocess

    path = metrics_dir.configure()
    if path:
        multiprocess.mark_process_dead(worker.pid, path)
