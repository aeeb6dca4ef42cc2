"""``GET /healthz/operations``: are beat and the workers alive and keeping up? ``GET /metrics``."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from config.problems import PROBLEM_CONTENT_TYPE, problem

from .metrics import exposition
from .services import operations_report


def _bearer(request: HttpRequest, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (never for an empty one)."""
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _authorized(request: HttpRequest) -> bool:
    token: str = settings.JOBTRAIL_OPS_TOKEN
    return not token or _bearer(request, token)


def _unauthorized(detail: str, realm: str) -> JsonResponse:
    response = JsonResponse(
        problem(status=401, code="not_authenticated", detail=detail),
        status=401,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    response["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def operations(request: HttpRequest) -> JsonResponse:
    """200 with ``status: ok`` when all is well, else 503 ``degraded`` naming what is wrong."""
    if not _authorized(request):
        return _unauthorized(
            "This view needs the operations token: Authorization: Bearer <token>.", "operations"
        )
    healthy, body = operations_report()
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response


def _may_scrape(request: HttpRequest) -> bool:
    """As ``/healthz``'s failure details: staff signed in to the admin, or a bearer token (the
    metrics token, for Prometheus, or the operations token)."""
    if _bearer(request, settings.JOBTRAIL_METRICS_TOKEN) or _bearer(
        request, settings.JOBTRAIL_OPS_TOKEN
    ):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of every process of this host, and the backlog gauges."""
    response: HttpResponse
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            problem(status=405, code="method_not_allowed", detail="Use GET."),
            status=405,
            content_type=PROBLEM_CONTENT_TYPE,
        )
        response["Allow"] = "GET, HEAD"
        return response
    if not _may_scrape(request):
        return _unauthorized(
            "Metrics are for staff signed in to the admin or a caller with "
            "Authorization: Bearer <JOBTRAIL_METRICS_TOKEN>.",
            "metrics",
        )
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
