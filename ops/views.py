"""``GET /healthz/operations``: are beat and the workers alive and keeping up?"""

import hmac

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from config.problems import PROBLEM_CONTENT_TYPE, problem

from .services import operations_report


def _authorized(request: HttpRequest) -> bool:
    token: str = settings.JOBTRAIL_OPS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def operations(request: HttpRequest) -> JsonResponse:
    """200 with ``status: ok`` when all is well, else 503 ``degraded`` naming what is wrong."""
    if not _authorized(request):
        response = JsonResponse(
            problem(
                status=401,
                code="not_authenticated",
                detail="This view needs the operations token: Authorization: Bearer <token>.",
            ),
            status=401,
            content_type=PROBLEM_CONTENT_TYPE,
        )
        response["WWW-Authenticate"] = 'Bearer realm="operations"'
        return response
    healthy, body = operations_report()
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response
