"""Requests gunicorn refuses before Jobtrail sees them answer problem documents too.

gunicorn as deployed (``--config python:config.gunicorn``, what the Procfile and the systemd
unit run); each request is written as is over a socket, since no HTTP client sends these.
"""

import json
from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack
from tests.live import raw_http

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def web(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """gunicorn only (and the broker /healthz asks about) on the test database; nothing is
    written, so one for the module."""
    stack = Stack(workdir=tmp_path_factory.mktemp("gunicorn-errors"))
    try:
        stack.start_broker()
        stack.start_web()
        yield stack
    finally:
        stack.processes.stop_all()


LONG_LINE = b"GET /api/v1/jobs/?code=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LONG_HEADER = (
    b"GET /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
)
MANY_HEADERS = (
    b"GET /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    + b"".join(b"X-H%d: 1\r\n" % i for i in range(120))
    + b"\r\n"
)
BAD_LENGTH = (
    b"POST /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: ten\r\n\r\n{}"
)
CONTROL_CHARACTER = b"GET /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x01b\r\n\r\n"


TITLES = {400: "Bad request", 414: "URI too long", 431: "Request header fields too large"}


@pytest.mark.parametrize(
    ("raw", "status", "code", "detail"),
    [
        (LONG_LINE, 414, "uri_too_long", "Request Line is too large"),
        (LONG_HEADER, 431, "headers_too_large", "Error parsing headers"),
        (MANY_HEADERS, 431, "headers_too_large", "Error parsing headers"),
        (BAD_LENGTH, 400, "malformed_request", "Content-Length"),
        (CONTROL_CHARACTER, 400, "malformed_request", "X-BAD"),
    ],
    ids=["request-line-too-long", "header-too-long", "too-many-headers", "bad-length", "ctl"],
)
def test_what_gunicorn_refuses_is_a_problem_document(
    web: Stack, raw: bytes, status: int, code: str, detail: str
) -> None:
    answered, headers, body = raw_http(web.web_port, raw)

    assert answered == status, body[:300]
    assert headers["content-type"] == "application/problem+json", headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert set(problem) == {"type", "title", "status", "detail", "code"}, problem
    assert problem["status"] == status and problem["code"] == code, problem
    assert problem["type"] == f"/problems/{code}"
    assert problem["title"] == TITLES[status]
    assert detail.lower() in problem["detail"].lower(), problem
    # the server is still there for the next request
    assert raw_http(web.web_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200
