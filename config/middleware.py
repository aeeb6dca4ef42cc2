from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .problems import json_problem


class BodySizeLimitMiddleware:
    """Answer 413 (problem JSON) before reading a body larger than ``JOBTRAIL_MAX_BODY_BYTES``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return json_problem(400, "invalid_content_length", "Content-Length is not a number.")
        limit = settings.JOBTRAIL_MAX_BODY_BYTES
        if length > limit:
            return json_problem(
                413, "body_too_large", f"The request body is larger than {limit} bytes."
            )
        return self.get_response(request)
