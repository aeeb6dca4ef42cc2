"""RFC 9457 problem documents for every API error.

Every error answer is ``application/problem+json`` with ``type, title, status, detail, code`` and,
for validation errors, ``errors: [{field, message}]``. ``code`` is stable; ``type`` is
``/problems/<code>`` unless an endpoint's contract names another (seed 000's 409).

This holds under ``/api/``, ``/services/`` and ``/engine/`` whatever ``DEBUG`` says (the admin
keeps Django's HTML pages): unknown routes answer the ``api_fallback`` view (a 404 problem, or a
308 redirect to the path with its trailing slash), a database outage answers 503 with
``Retry-After``, and ``config.middleware`` refuses bodies it cannot read (411, 413, 415).
"""

import codecs
import logging
import re
import sys
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.http import escape_leading_slashes
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request, page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken

from jobs.errors import JobError

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Paths that answer problem documents (the admin and the report download keep HTML pages).
API_PATH = re.compile(r"^/(?:api|services|engine)(?:/|$)")

# A lost database connection (PostgreSQL restarting, SQLite locked for too long): 503, retry soon.
try:
    import psycopg

    DATABASE_DOWN: tuple[type[Exception], ...] = (
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    )
except ImportError:  # pragma: no cover - SQLite-only installs
    DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER = 5

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Server error",
    503: "Service unavailable",
}


class TokenExpired(InvalidToken):
    """A genuine token (its signature checks out) past its ``exp``: get a new one."""

    default_detail = _("The token has expired; get a new one.")
    default_code = "token_expired"


ACCESS_TOKEN_EXPIRED = (
    "The access token has expired; get a new one with the refresh token "
    "(POST /api/v1/auth/token/refresh/) or the credentials (POST /api/v1/auth/token/)."
)
REFRESH_TOKEN_EXPIRED = (
    "The refresh token has expired; get new tokens with the credentials (POST /api/v1/auth/token/)."
)


class TokenRevoked(InvalidToken):
    """A token issued before its user's password change, deactivation or removal (jobs.tokens)."""

    default_detail = _(
        "This token was revoked (password changed, user deactivated or removed from the "
        "company); get a new one."
    )
    default_code = "token_revoked"


# DRF exception class -> stable code (the first match in the list wins).
DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (TokenExpired, "token_expired"),
    (TokenRevoked, "token_revoked"),
    (InvalidToken, "invalid_token"),
    (exceptions.ParseError, "malformed_json"),
    (exceptions.ValidationError, "validation_error"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


class ProblemError(exceptions.APIException):
    """An API error with its own status and code, raised by views."""

    def __init__(
        self,
        detail: str,
        *,
        status_code: int,
        code: str,
        title: str | None = None,
        type: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.problem_code = code
        self.title = title or TITLES.get(status_code, "Error")
        self.type = type
        self.errors = errors


def problem(
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    type: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type or f"/problems/{code}",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(headers: dict[str, str] | None = None, **kwargs: Any) -> Response:
    body = problem(**kwargs)
    return Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def flatten_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error structure into ``[{field, message}]`` with dotted field paths."""
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else key)
            out.extend(flatten_errors(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"field": prefix, "message": str(item)} for item in detail]
        out = []
        for index, item in enumerate(detail):
            if item:
                out.extend(flatten_errors(item, f"{prefix}[{index}]" if prefix else str(index)))
        return out
    return [{"field": prefix, "message": str(detail)}]


def _validation_detail(errors: list[dict[str, str]]) -> str:
    if len(errors) == 1:
        field = errors[0]["field"]
        return f"{field}: {errors[0]['message']}" if field else errors[0]["message"]
    return f"{len(errors)} fields are invalid; see errors."


def is_api_path(path: str) -> bool:
    return API_PATH.match(path) is not None


def database_unavailable_problem() -> dict[str, Any]:
    return problem(
        status=503,
        code="database_unavailable",
        detail="The database is unavailable; retry in a few seconds. Nothing was changed.",
    )


def database_unavailable(exc: BaseException) -> JsonResponse:
    """The answer to a lost database connection, outside DRF (middleware, handler500)."""
    logger.warning("database unavailable: %s", exc)
    return json_problem(
        **database_unavailable_problem(), headers={"Retry-After": str(DATABASE_RETRY_AFTER)}
    )


UTF8 = codecs.lookup("utf-8").name


def unsupported_charset(charset: str) -> str | None:
    """Why a Content-Type ``charset`` cannot be read, or None for UTF-8 (the only one taken).

    JSON exchanged between systems must be UTF-8 (RFC 8259 section 8.1), so even a real text
    encoding such as latin-1 is refused rather than guessed at.
    """
    try:
        if codecs.lookup(charset).name == UTF8:
            return None
    except LookupError:
        pass
    shown = charset if len(charset) <= 40 else charset[:40] + "..."
    return f"The charset {shown!r} is not supported; send JSON as UTF-8 (charset=utf-8 or none)."


def unsupported_charset_error(charset: str) -> "ProblemError":
    return ProblemError(
        unsupported_charset(charset) or charset, status_code=415, code="unsupported_charset"
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every known error becomes a problem document."""
    from rest_framework.views import set_rollback  # here: rest_framework.views imports settings

    if isinstance(exc, DATABASE_DOWN):
        # Raised before anything committed, or by the commit itself: the client may retry.
        logger.warning("database unavailable: %s", exc)
        set_rollback()
        body = database_unavailable_problem()
        return Response(
            body,
            status=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
            content_type=PROBLEM_CONTENT_TYPE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = ProblemError(
            "The request body is larger than 1 MiB.", status_code=413, code="body_too_large"
        )

    if isinstance(exc, JobError):
        set_rollback()
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        if exc.status == 400 and errors is None:
            errors = [{"field": "", "message": exc.detail}]
        return problem_response(
            status=exc.status, code=exc.code, title=exc.title, detail=exc.detail, errors=errors
        )
    if not isinstance(exc, exceptions.APIException):
        return None

    set_rollback()
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(max(1, int(wait + 0.999)))

    if isinstance(exc, ProblemError):
        return problem_response(
            headers=headers,
            status=exc.status_code,
            code=exc.problem_code,
            title=exc.title,
            type=exc.type,
            detail=str(exc.detail),
            errors=exc.errors,
        )
    code = next((c for cls, c in DRF_CODES if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        return problem_response(
            headers=headers,
            status=status.HTTP_400_BAD_REQUEST,
            code=code,
            title="Invalid request",
            detail=_validation_detail(errors),
            errors=errors,
        )
    detail: Any = exc.detail
    if isinstance(detail, dict):  # simplejwt's InvalidToken carries a dict
        detail = detail.get("detail") or "Invalid token."
    return problem_response(headers=headers, status=exc.status_code, code=code, detail=str(detail))


def json_problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JsonResponse:
    response = JsonResponse(
        problem(status=status, code=code, detail=detail, **fields),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def not_found(request: HttpRequest) -> JsonResponse:
    return json_problem(404, "not_found", f"No resource at {request.path[:200]}.")


@csrf_exempt
def api_fallback(request: HttpRequest) -> HttpResponse:
    """Answer every unknown path under the API prefixes (the last URL pattern).

    A route of its own, not ``handler404``: with ``DEBUG`` on Django renders its HTML 404 page
    without calling ``handler404``. A path that only lacks its trailing slash answers 308, which
    keeps the method and body (Django's APPEND_SLASH answers 301, which clients follow as a GET,
    and with ``DEBUG`` on it fails a POST with a RuntimeError).
    """
    path = request.path_info
    if not path.endswith("/"):
        try:
            match = resolve(f"{path}/", getattr(request, "urlconf", None))
        except Resolver404:
            match = None
        if match is not None and match.func is not api_fallback:
            response = HttpResponse(status=308)
            response["Location"] = escape_leading_slashes(
                request.get_full_path(force_append_slash=True)
            )
            return response
    return not_found(request)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/admin/"):
        return page_not_found(request, exception)
    return not_found(request)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """What Django refuses before a view runs (a ``Host`` outside ``ALLOWED_HOSTS``, too many
    fields): a problem document under the API prefixes, Django's page elsewhere."""
    if is_api_path(request.path_info):
        return json_problem(400, "bad_request", "The request cannot be served: " + _why(exception))
    return bad_request(request, exception)


def _why(exception: Exception) -> str:
    if isinstance(exception, DisallowedHost):
        return "its Host header is not one this server answers for."
    return "it is malformed."


def handler500(request: HttpRequest) -> JsonResponse:
    # Django calls this inside its ``except`` block, so the exception is still at hand.
    exc = sys.exc_info()[1]
    if exc is not None and isinstance(exc, DATABASE_DOWN):
        return database_unavailable(exc)
    return json_problem(500, "server_error", "Something went wrong on our side.")
