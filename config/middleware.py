import functools
import io
from collections.abc import Callable

import csp.constants
import csp.middleware
import csp.utils
from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseBase
from django.utils.http import parse_header_parameters

from .problems import (
    DATABASE_DOWN,
    database_unavailable,
    is_api_path,
    json_problem,
    unsupported_charset,
)

READ_CHUNK = 64 * 1024

try:  # what gunicorn's chunked-body reader raises for a malformed body (a client's fault)
    from gunicorn.http.errors import NoMoreData, ParseException

    MALFORMED_BODY: tuple[type[Exception], ...] = (ParseException, NoMoreData, ValueError)
except ImportError:  # pragma: no cover - another server
    MALFORMED_BODY = (ValueError, OSError)


def _too_large(limit: int) -> HttpResponse:
    return json_problem(413, "body_too_large", f"The request body is larger than {limit} bytes.")


class BodySizeLimitMiddleware:
    """Answer 413 (problem JSON) before reading a body larger than ``JOBTRAIL_MAX_BODY_BYTES``.

    A chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``) is read here, up to
    the limit, when the server marks its input as terminated (gunicorn sets
    ``wsgi.input_terminated``): Django itself reads a body without ``Content-Length`` as empty.
    Without that guarantee the answer is 411 Length Required; a body whose chunks are malformed
    (a bad chunk size, a missing terminator, the client gone mid-body) 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.JOBTRAIL_MAX_BODY_BYTES
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            refused = self._read_chunked(request, limit)
            if refused is not None:
                return refused
            return self.get_response(request)
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return json_problem(400, "invalid_content_length", "Content-Length is not a number.")
        if length > limit:
            return _too_large(limit)
        return self.get_response(request)

    @staticmethod
    def _read_chunked(request: HttpRequest, limit: int) -> HttpResponse | None:
        if not request.META.get("wsgi.input_terminated"):
            return json_problem(
                411,
                "length_required",
                "A chunked request body needs a server that ends the input; "
                "send Content-Length instead.",
            )
        stream = request.META["wsgi.input"]
        body = bytearray()
        try:
            while len(body) <= limit:
                chunk = stream.read(min(READ_CHUNK, limit + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
        except MALFORMED_BODY as exc:
            return json_problem(
                400,
                "malformed_chunked_body",
                f"The chunked request body is malformed ({type(exc).__name__}).",
            )
        if len(body) > limit:
            return _too_large(limit)
        # Hand the body to Django as if it had come with a Content-Length.
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = LimitedStream(io.BytesIO(bytes(body)), len(body))  # type: ignore[assignment]
        return None


class NulQueryMiddleware:
    """Answer 400 to a query string holding a NUL character (``%00``), on every path.

    PostgreSQL refuses NUL in text, so a NUL reaching a lookup (an admin list filter, an API
    filter) would end as a database error, a 500. Forms refuse it (Django's
    ``ProhibitNullCharactersValidator``); list filters and query parameters read raw do not.
    A substring test of the raw query string: nothing is parsed for the requests without one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if query and ("%00" in query or "\x00" in query):
            detail = "A query parameter contains a NUL character (%00)."
            if is_api_path(request.path_info):
                return json_problem(400, "invalid_query", detail)
            return HttpResponseBadRequest(detail, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class ApiNoStoreMiddleware:
    """Keep every answer under the API prefixes out of caches: ``Cache-Control: no-store``
    unless the view set its own. They carry tokens, secrets and signed report links, and a
    poll must never be answered from a cache. Near the top of the stack, so the answers of the
    middleware below it (413, 411, the NUL query's 400, 415, 503) carry it too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Cache-Control" not in response and is_api_path(request.path_info):
            response["Cache-Control"] = "no-store"
        return response


class ApiProblemMiddleware:
    """Under the API prefixes: refuse charsets other than UTF-8 (415) before anything decodes
    the request, and answer a lost database connection with 503 + ``Retry-After``.

    DRF views answer their own exceptions (``config.problems.exception_handler``); this covers
    the rest of the API paths, whatever ``DEBUG`` says (``process_exception`` runs before
    Django's debug page).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            try:
                _, params = parse_header_parameters(request.META.get("CONTENT_TYPE", ""))
            except ValueError:  # an RFC 2231 parameter in an unknown encoding
                return json_problem(
                    415, "unsupported_media_type", "The Content-Type header cannot be read."
                )
            charset = params.get("charset")
            if charset is not None and (detail := unsupported_charset(charset)):
                return json_problem(415, "unsupported_charset", detail)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_api_path(request.path_info) and isinstance(exception, DATABASE_DOWN):
            return database_unavailable(exception)
        return None


_PER_RESPONSE_CSP = tuple(
    f"_csp_{kind}{suffix}"
    for kind in ("config", "update", "replace", "exempt")
    for suffix in ("", "_ro")
)


class SitePolicyCSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware, with the site's one policy built once instead of per response.

    django-csp rebuilds the header from the settings on every response (about a tenth of a
    millisecond, a noticeable share of an API request). Jobtrail has one policy for every
    page: no view changes it (``@csp_update`` / ``@csp_replace`` / ``@csp_exempt``) and no
    template takes a nonce. A response that does either, a report-only policy, and DEBUG's
    error pages still go through django-csp itself.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if (
            settings.DEBUG
            or getattr(request, "_csp_nonce", None) is not None
            or getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
            or (getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}).get(
                "EXCLUDE_URL_PREFIXES"
            )
            or any(hasattr(response, name) for name in _PER_RESPONSE_CSP)
        ):
            return super().process_response(request, response)
        if csp.constants.HEADER not in response:
            response[csp.constants.HEADER] = _site_policy(
                id(getattr(settings, "CONTENT_SECURITY_POLICY", None))
            )
        # as django-csp does: a nonce asked for after the header is written is an error
        request.csp_nonce = csp.middleware.CheckableLazyObject(  # type: ignore[attr-defined]
            self._csp_nonce_post_response
        )
        return response


@functools.lru_cache(maxsize=4)
def _site_policy(settings_id: int) -> str:
    """The policy of ``settings.CONTENT_SECURITY_POLICY`` (keyed by the object: a test that
    overrides the setting gets its own)."""
    return csp.utils.build_policy()


class StaffTimeZoneMiddleware:
    """Show the staff console in the signed-in staff user's time zone (UTC by default).

    For staff requests under the admin this activates the zone the user chose
    (``ops.preferences``: one primary-key lookup per page) with ``django.utils.timezone``:
    the console's timestamps (``config.admin.exact_time``), Django's own datetime rendering
    and the naive dates typed into its filters and forms all follow it. Everything else (the
    API, the seed endpoints) stays in UTC.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # the API's requests pass straight through: one string comparison
        if not request.path.startswith(_admin_prefix(settings.ROOT_URLCONF)):
            return self.get_response(request)
        from django.utils import timezone

        from ops.preferences import UnknownTimeZone, staff_time_zone, zone

        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff:
            return self.get_response(request)
        try:
            timezone.activate(zone(staff_time_zone(user_id=user.pk)))
        except UnknownTimeZone:  # a name this system no longer knows: UTC
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@functools.lru_cache(maxsize=4)
def _admin_prefix(urlconf: str) -> str:
    """The admin's path (``/admin/``), reversed once per URL configuration."""
    from django.urls import reverse

    return reverse("admin:index", urlconf=urlconf)
