"""OpenAPI helpers: the problem document, the error responses every endpoint can give, list
pages as they are sent, response headers, and the postprocessing hook that makes the document
say what the server answers outside the views (middleware, fallbacks, the database)."""

import functools
from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from .problems import DATABASE_RETRY_AFTER, PROBLEM_CONTENT_TYPE, TITLES, problem
from .schema_examples import BY_COMPONENT, NEXT_PAGE


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


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Bearer token for the API; expires (15 min).")
    refresh = serializers.CharField(help_text="Exchanges for a new access token (24 h).")


class RefreshInputSerializer(serializers.Serializer):
    openapi_additional_properties = False  # jobs.auth.CompanyTokenRefreshSerializer refuses them
    refresh = serializers.CharField(help_text="The refresh token from POST /api/v1/auth/token/.")


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="A new bearer token for the API.")


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "\\S"},
    OpenApiParameter.HEADER,
    required=False,
    description="1 to 255 characters, not only spaces (else 400 `invalid_idempotency_key`). The "
    "same key and body replay the first answer (kept 48 h, header `Idempotent-Replayed: true`); "
    "the same key with another body: 422 `idempotency_key_reused`. Use a new key (a UUID) per "
    "distinct request.",
    examples=[OpenApiExample("a UUID", value="5f1c9e0e-6a43-4c1e-9a55-2b0f7d2f0c11")],
)
CURSOR = OpenApiParameter(
    "cursor",
    str,
    OpenApiParameter.QUERY,
    description="Opaque: take it from a page's `next` or `previous` URL, never build one. A "
    "cursor the server did not give answers 400 (`validation_error` on `cursor`).",
)
PAGE_SIZE = OpenApiParameter(
    "page_size",
    {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
    OpenApiParameter.QUERY,
    description="Items per page, 1 to 500 (default 50); anything else answers 400.",
)


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's, with the ``Idempotency-Key`` header on every ``@idempotent`` handler."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        handler = getattr(self.view, self.method.lower(), None)
        named = {p.name for p in parameters if isinstance(p, OpenApiParameter)}
        if getattr(handler, "idempotent", False) and IDEMPOTENCY_KEY.name not in named:
            parameters.append(IDEMPOTENCY_KEY)
        if self._paginated():
            parameters += [p for p in (CURSOR, PAGE_SIZE) if p.name not in named]
        return parameters

    def _paginated(self) -> bool:
        if self.method != "GET":
            return False
        responses = self.get_response_serializers()
        ok = responses.get(200) if isinstance(responses, dict) else None
        return bool(getattr(ok, "paginated_list", False))

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        """A request body the server refuses unknown fields of says so
        (``additionalProperties: false``), with its rules between fields (``openapi_rules``)."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            if getattr(serializer, "openapi_additional_properties", True) is False:
                schema["additionalProperties"] = False
            schema.update(getattr(serializer, "openapi_rules", {}))
        return schema

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        """A text field that may not be blank: at least one character that is not a space (DRF
        trims the value, then refuses it empty)."""
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and not field.allow_blank
            and schema.get("type") == "string"
            and "format" not in schema
            and "enum" not in schema
        ):
            schema.setdefault("minLength", 1)
            # a RegexField's own pattern (added after this) says more than "not only spaces"
            regex = any(hasattr(v, "regex") for v in field.validators)
            if field.trim_whitespace and not regex:
                schema.setdefault("pattern", r"\S")
        return schema

    def get_description(self) -> str:  # type: ignore[override]
        """The handler's docstring, or the view class's own: never one inherited from a base
        view (``CompanyAPIView``'s says nothing to a client)."""
        handler = getattr(self.view, self.method.lower(), None)
        own = self.view.__class__.__dict__.get("__doc__")
        return get_doc(handler) or (get_doc(self.view.__class__) if own else "")

    def get_operation_id(self) -> str:
        """A page of a list is a ``_list`` operation (drf-spectacular sees one object)."""
        operation_id: str = super().get_operation_id()
        if operation_id.endswith("_retrieve") and self._paginated():
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id


@functools.cache
def paginated(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """A list page as the cursor paginators send it: ``{next, previous, results}``."""
    base = serializer_class.__name__.removesuffix("Serializer")
    return type(
        f"Paginated{base}ListSerializer",
        (serializers.Serializer,),
        {
            "__module__": __name__,
            "__doc__": f"One page of {base} items and the cursors of the pages around it.",
            "paginated_list": True,
            "next": serializers.URLField(
                allow_null=True, help_text="The next page (the same query); null on the last."
            ),
            "previous": serializers.URLField(
                allow_null=True, help_text="The previous page; null on the first."
            ),
            "results": serializer_class(many=True),
        },
    )


def retry_after(*codes: int) -> OpenApiParameter:
    """``Retry-After`` on a job's answer: seconds before polling again, while it runs."""
    return OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=list(codes),
        description="Seconds to wait before polling again; sent while the job is not finished.",
    )


def location(
    *codes: int, description: str = "The URL of the created resource."
) -> OpenApiParameter:
    return OpenApiParameter(
        "Location",
        OpenApiTypes.URI,
        OpenApiParameter.HEADER,
        response=list(codes),
        description=description,
    )


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
            "token_expired",
            "The access token has expired; get a new one with the refresh token "
            "(POST /api/v1/auth/token/refresh/) or the credentials (POST /api/v1/auth/token/).",
        ),
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


# --- the postprocessing hook -------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
HEADERS = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait before retrying.",
    },
    "Location": {
        "schema": {"type": "string", "format": "uri"},
        "description": "The path with its trailing slash; method and body are kept.",
    },
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on a replayed answer (the same Idempotency-Key and body).",
    },
}
# What the server may answer to any operation before or beside its view.
EVERY_OPERATION = {
    "400": "The `Content-Length` header is not a number (`invalid_content_length`).",
    "406": "The `Accept` header asks for something other than JSON (`not_acceptable`).",
    "411": "A chunked body the server cannot end; send `Content-Length` (`length_required`).",
    "413": "The body is larger than 1 MiB (`body_too_large`).",
    "415": "A `Content-Type` that cannot be read, or a charset other than UTF-8 "
    "(`unsupported_media_type`, `unsupported_charset`).",
    "503": "The database is unavailable (`database_unavailable`); nothing was changed. Retry "
    f"after `Retry-After` seconds (about {DATABASE_RETRY_AFTER}).",
}
REDIRECT = (
    "The path without its trailing slash answers 308 to the path with it (`Location`); the "
    "method and body are kept."
)


def _example_of(schema: dict[str, Any]) -> Any:
    """The example of a response schema's component (a list page: a page of one), or None."""
    if schema.get("type") == "array":
        item = _example_of(schema.get("items", {}))
        return None if item is None else [item]
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    if name.startswith("Paginated") and name.endswith("List"):
        item = BY_COMPONENT.get(name.removeprefix("Paginated").removesuffix("List"))
        if item is None:
            return None
        return {"next": NEXT_PAGE, "previous": None, "results": [item]}
    return BY_COMPONENT.get(name)


def _add_success_examples(operation: dict[str, Any]) -> None:
    for code, response in operation.get("responses", {}).items():
        if code[0] != "2":
            continue
        for media in (response.get("content") or {}).values():
            if media.get("examples") or "example" in media:
                continue
            example = _example_of(media.get("schema") or {})
            if example is not None:
                media["examples"] = {"example": {"value": example}}


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}


def postprocess_schema(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Make every operation declare what the server sends outside its view.

    - error answers are ``application/problem+json`` (the views' renderer says
      ``application/json``; ``config.problems`` sends problem documents);
    - the statuses of the middleware, the fallback route and a database outage (400, 406, 411,
      413, 415, 503 with ``Retry-After``; 308 with ``Location`` on paths that end with ``/``);
    - ``Retry-After`` on 429 and ``Idempotent-Replayed`` on the answers of operations that take
      an ``Idempotency-Key``.
    """
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            keyed = any(
                p.get("in") == "header" and p.get("name") == "Idempotency-Key"
                for p in operation.get("parameters", [])
            )
            for code, response in responses.items():
                content = response.get("content")
                media = (content or {}).get("application/json")
                if code[0] in "45" and media and media.get("schema") == PROBLEM_REF:
                    content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
                if keyed and code[0] in "234":
                    response.setdefault("headers", {})["Idempotent-Replayed"] = HEADERS[
                        "Idempotent-Replayed"
                    ]
                if code == "429":
                    response.setdefault("headers", {})["Retry-After"] = HEADERS["Retry-After"]
            for code, description in EVERY_OPERATION.items():
                if code not in responses:
                    responses[code] = {
                        "description": f"{TITLES.get(int(code), 'Error')}: {description}",
                        "content": _problem_content(),
                    }
            if "{" in path and "404" not in responses:
                responses["404"] = {
                    "description": "Not found: no such resource for your company, or a path "
                    "parameter that is not one (`not_found`).",
                    "content": _problem_content(),
                }
            responses["503"].setdefault("headers", {})["Retry-After"] = HEADERS["Retry-After"]
            if path.endswith("/") and "308" not in responses:
                responses["308"] = {
                    "description": REDIRECT,
                    "headers": {"Location": HEADERS["Location"]},
                }
            _add_success_examples(operation)
            operation["responses"] = dict(sorted(responses.items()))
    return result
