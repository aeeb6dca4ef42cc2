"""OpenAPI helpers: the problem document and the error responses every endpoint can give."""

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from .problems import problem


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem document (application/problem+json)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = FieldErrorSerializer(many=True, required=False)  # type: ignore[assignment]


def problem_example(status: int, code: str, detail: str, **kwargs: Any) -> OpenApiExample:
    return OpenApiExample(code, value=problem(status=status, code=code, detail=detail, **kwargs))


def error(status: int, description: str, *examples: OpenApiExample) -> OpenApiResponse:
    return OpenApiResponse(ProblemSerializer, description=description, examples=list(examples))


AUTH_ERRORS = {
    401: error(
        401,
        "Missing, expired or invalid bearer token.",
        problem_example(401, "not_authenticated", "Authentication credentials were not provided."),
        problem_example(401, "invalid_token", "Given token not valid for any token type"),
        problem_example(
            401,
            "token_revoked",
            "This token was revoked (password changed, user deactivated or removed from the "
            "company); get a new one.",
        ),
    ),
    403: error(
        403,
        "The user is not an API client of a company.",
        problem_example(403, "no_company", "This user is not an API client of any company."),
    ),
    429: error(
        429,
        "Rate limit exceeded; see Retry-After.",
        problem_example(429, "rate_limited", "Request was throttled."),
    ),
}
NOT_FOUND = {
    404: error(
        404, "No such job for your company.", problem_example(404, "not_found", "No such job.")
    )
}
BAD_REQUEST = {
    400: error(
        400,
        "Malformed JSON, wrong types, unknown fields or values out of range.",
        problem_example(
            400,
            "validation_error",
            "total_records: Ensure this value is greater than or equal to 0.",
            title="Invalid request",
            errors=[
                {
                    "field": "total_records",
                    "message": "Ensure this value is greater than or equal to 0.",
                }
            ],
        ),
        problem_example(400, "malformed_json", "JSON parse error - Expecting value"),
    ),
    413: error(
        413,
        "Body over 1 MiB.",
        problem_example(413, "body_too_large", "The request body is larger than 1048576 bytes."),
    ),
}
IDEMPOTENCY_ERRORS = {
    422: error(
        422,
        "Idempotency-Key reused with a different request.",
        problem_example(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request; use a new key.",
        ),
    ),
}
CONFLICT = {
    409: error(
        409,
        "The job is finished, or the state machine does not allow the move.",
        problem_example(
            409,
            "job_finished",
            "Job JOB-7F3K2Q9A is already completed; it cannot become failed.",
            title="Job already finished",
        ),
        problem_example(
            409,
            "invalid_transition",
            "Job JOB-7F3K2Q9A is processing; it cannot become started.",
            title="Invalid status change",
        ),
    )
}
