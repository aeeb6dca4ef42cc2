"""``Idempotency-Key`` on POST: the same key and body replay the first answer.

The decorated handler runs in one transaction (with or without a key), and the key is claimed
by the last statement of that transaction: one ``INSERT … ON CONFLICT DO NOTHING`` that stores
the answer with it. So the work, the claim and the stored answer commit together or not at all,
nothing runs after the commit (it cannot turn a committed write into a 5xx or lose its replay),
and a keyed request costs one query more than an unkeyed one.

When the key is already taken the request's work is rolled back and the stored answer decides:
the same body replays it, another body answers 422. Two requests with one key at once cannot
both commit: the second one's insert waits for the first transaction (the unique index), then
finds its answer and replays it. An error answer (4xx) is stored under the key in a transaction
of its own once the failed one rolled back; a 5xx stores nothing (a retry runs again). A key past
``JOBTRAIL_IDEMPOTENCY_TTL``, or one left without an answer for ``IN_PROGRESS_TIMEOUT`` (rows
written before answers were stored with their claim), counts as unused.

What is kept of an answer is bounded: the fields a view names as ``unstored_fields`` (a webhook
endpoint's signing ``secret``) are never stored, so a replay answers without them; a body larger
than ``JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES`` is not stored at all, and a replay answers the
first status and headers with a short note instead (``ANSWER_NOT_KEPT``).
"""

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Field
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from config import sql, strict_json
from config.problems import ProblemError
from config.transactions import request_transaction

from .models import IdempotencyKey

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
# The same header in the WSGI environ: reading it there spares building ``request.headers``
# (every header of the request parsed) on every POST that sends no key.
HEADER_META = "HTTP_IDEMPOTENCY_KEY"
IN_PROGRESS_TIMEOUT = timedelta(seconds=120)  # longer than any request may run
REPLAYED_HEADERS = ("Location", "Retry-After")
# Kept in the stored headers (never sent) when the body was too large to keep.
BODY_NOT_KEPT = "X-Jobtrail-Body-Not-Kept"
ANSWER_NOT_KEPT = (
    "The first answer to this Idempotency-Key was too large to keep; the request was carried "
    "out once. Read the resource for its current state."
)


def request_fingerprint(request: Request) -> str:
    body = request._request.body
    try:
        parsed = strict_json.loads(body)
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    # the company too: keys are the user's, and a user moved to another company must not get
    # the first company's answer replayed (it answers idempotency_key_reused instead)
    company = getattr(request.user, "jobtrail_company", None)
    scope = company.pk if company is not None else ""
    # the path in lower case: its UUIDs are read in either case (config.converters), and a
    # retry that spells one otherwise is the same request
    digest = hashlib.sha256(f"{scope} {request.method} {request.path.lower()}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


class _KeyTaken(Exception):
    """The key already has an answer: roll this request's work back and answer from it."""


def _field(name: str) -> "Field[Any, Any]":
    return cast("Field[Any, Any]", IdempotencyKey._meta.get_field(name))


def _insert_sql() -> str:
    meta = IdempotencyKey._meta
    columns = [
        str(_field(name).column)
        for name in (
            "user",
            "key",
            "request_fingerprint",
            "response_status",
            "response_body",
            "response_headers",
            "created_at",
        )
    ]
    quote = connection.ops.quote_name
    user_column, key_column = columns[0], columns[1]
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({quote(user_column)}, {quote(key_column)}) DO NOTHING"
    )


def _stored_body(
    response: Response, headers: dict[str, str], unstored_fields: tuple[str, ...]
) -> Any:
    """What is kept of the answer's body: no unstored field, nothing past the size limit."""
    data = response.data
    if unstored_fields and isinstance(data, dict):
        data = {name: value for name, value in data.items() if name not in unstored_fields}
    rendered = JSONRenderer().render(data) or b"null"
    if len(rendered) > settings.JOBTRAIL_IDEMPOTENCY_MAX_STORED_BYTES:
        headers[BODY_NOT_KEPT] = str(len(rendered))
        return None
    return json.loads(rendered)


def _claim_with_answer(
    *,
    user: Any,
    key: str,
    fingerprint: str,
    response: Response,
    unstored_fields: tuple[str, ...] = (),
) -> bool:
    """Store ``response`` under the key unless the key is taken; True if it was stored.

    One ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite): the claim and the answer.
    """
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    if response.content_type:
        headers["Content-Type"] = response.content_type
    body = _stored_body(response, headers, unstored_fields)
    field = _field
    values = [
        user.pk,
        key,
        fingerprint,
        response.status_code,
        field("response_body").get_db_prep_save(body, connection),
        field("response_headers").get_db_prep_save(headers, connection),
        field("created_at").get_db_prep_save(timezone.now(), connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(), values)
        return bool(cursor.rowcount == 1)


def _stale(record: IdempotencyKey) -> bool:
    now = timezone.now()
    if record.created_at < now - timedelta(seconds=settings.JOBTRAIL_IDEMPOTENCY_TTL):
        return True
    return record.response_status is None and record.created_at < now - IN_PROGRESS_TIMEOUT


def _replay(record: IdempotencyKey) -> Response:
    headers = dict(record.response_headers)
    content_type = headers.pop("Content-Type", None)
    headers["Idempotent-Replayed"] = "true"
    body = record.response_body
    if headers.pop(BODY_NOT_KEPT, None) is not None:
        body = {"detail": ANSWER_NOT_KEPT}
    return Response(
        body,
        status=record.response_status,
        headers=headers,
        content_type=content_type,
    )


def _answer_from(record: IdempotencyKey, fingerprint: str) -> Response:
    if record.request_fingerprint != fingerprint:
        raise ProblemError(
            "This Idempotency-Key was used with a different request; use a new key.",
            status_code=422,
            code="idempotency_key_reused",
        )
    if record.response_status is None:
        raise ProblemError(
            "A request with this Idempotency-Key is still being processed.",
            status_code=409,
            code="idempotency_request_in_progress",
        )
    return _replay(record)


def _taken(*, user: Any, key: str) -> IdempotencyKey | None:
    """The key's live record, or None once a stale one is deleted (the request runs again)."""
    record = IdempotencyKey.objects.filter(user=user, key=key).first()
    if record is not None and _stale(record):
        IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).delete()
        return None
    return record


Handler = Callable[..., Response]


def idempotent(
    handler: Handler | None = None,
    *,
    unstored_fields: tuple[str, ...] = (),
    own_commit: bool = False,
) -> Any:
    """Decorate an APIView's ``post`` so repeats with the same key replay the first answer.

    The handler runs in one transaction (its answer is built before the commit); with
    ``own_commit``, a request without a key runs the handler as it is: its one service commits
    its change whole and the answer is built from what the service returned (a job change on
    PostgreSQL is then one statement, ``jobs.services._job_change``). With
    ``unstored_fields`` (``@idempotent(unstored_fields=("secret",))``) those top-level fields of
    the answer are never written to the table, and a replay answers without them.
    """
    if handler is None:
        return functools.partial(idempotent, unstored_fields=unstored_fields, own_commit=own_commit)

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.META.get(HEADER_META)
        if key is None:
            if own_commit:
                return handler(view, request, *args, **kwargs)
            with request_transaction():
                return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > 255:
            raise ProblemError(
                "Idempotency-Key must be 1 to 255 characters.",
                status_code=400,
                code="invalid_idempotency_key",
            )
        fingerprint = request_fingerprint(request)
        user = request.user
        for _run in range(2):  # a second run only after a stale record was deleted
            try:
                with request_transaction():
                    response = handler(view, request, *args, **kwargs)
                    if response.status_code < 500 and not _claim_with_answer(
                        user=user,
                        key=key,
                        fingerprint=fingerprint,
                        response=response,
                        unstored_fields=unstored_fields,
                    ):
                        raise _KeyTaken
                return response
            except _KeyTaken:
                record = _taken(user=user, key=key)
                if record is not None:
                    return _answer_from(record, fingerprint)
                continue
            except Exception as exc:
                failure: Exception = exc
            # Nothing committed. Answer the error; keep a 4xx answer under the key.
            response = view.handle_exception(failure)  # re-raises what it cannot answer
            if response.status_code >= 500:
                return response
            try:
                with transaction.atomic():
                    stored = _claim_with_answer(
                        user=user, key=key, fingerprint=fingerprint, response=response
                    )
            except DatabaseError as exc:
                logger.warning("answer of idempotency key %r not stored (%s)", key, exc)
                return response
            if stored:
                return response
            record = _taken(user=user, key=key)
            if record is not None:
                return _answer_from(record, fingerprint)
        raise ProblemError(  # pragma: no cover - the key went stale twice within one request
            "A request with this Idempotency-Key is still being processed.",
            status_code=409,
            code="idempotency_request_in_progress",
        )

    wrapper.idempotent = True  # type: ignore[attr-defined]  # the schema documents the header
    return wrapper


def idempotency_keys_purge(*, budget: float) -> sql.Deleted:
    """Delete keys older than ``JOBTRAIL_IDEMPOTENCY_TTL``, oldest first, a batch per
    transaction (``config.sql.delete_oldest``: a key a request holds is left for the next
    run), for at most ``budget`` seconds."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOBTRAIL_IDEMPOTENCY_TTL)
    return sql.delete_oldest(
        IdempotencyKey.objects.filter(created_at__lt=cutoff),
        order_by="created_at",
        deadline=time.monotonic() + budget,
    )
