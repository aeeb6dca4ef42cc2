"""``Idempotency-Key`` on POST: the same key and body replay the first answer.

The first request claims the key (a committed row) before it runs, so a concurrent duplicate
gets 409 instead of running twice; a different body under the same key gets 422.

The decorated handler runs in one transaction that also stores its answer under the key (with
or without a key, the answer is built before the commit): a write that committed has its answer
stored, so nothing after the commit can turn it into a 5xx or lose the replay. When the write
fails (5xx, e.g. the database went away) nothing committed and the key is freed; if even that
is impossible, the unanswered key frees itself after ``IN_PROGRESS_TIMEOUT`` (until then a
retry with the key answers 409 ``idempotency_request_in_progress``).
"""

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from config.problems import ProblemError

from .models import IdempotencyKey

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
IN_PROGRESS_TIMEOUT = timedelta(seconds=120)  # longer than any request may run
REPLAYED_HEADERS = ("Location", "Retry-After")


def request_fingerprint(request: Request) -> str:
    body = request._request.body
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _claim(*, user: Any, key: str, fingerprint: str) -> tuple[IdempotencyKey, bool]:
    now = timezone.now()
    expired = Q(created_at__lt=now - timedelta(seconds=settings.JOBTRAIL_IDEMPOTENCY_TTL))
    # a first request that never answered (its process was killed) frees the key
    abandoned = Q(response_status__isnull=True, created_at__lt=now - IN_PROGRESS_TIMEOUT)
    IdempotencyKey.objects.filter(expired | abandoned, user=user, key=key).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                user=user, key=key, request_fingerprint=fingerprint
            )
        return record, True
    except IntegrityError:
        return IdempotencyKey.objects.get(user=user, key=key), False


def _replay(record: IdempotencyKey) -> Response:
    headers = dict(record.response_headers)
    content_type = headers.pop("Content-Type", None)
    headers["Idempotent-Replayed"] = "true"
    return Response(
        record.response_body,
        status=record.response_status,
        headers=headers,
        content_type=content_type,
    )


def _store(record: IdempotencyKey, response: Response) -> None:
    record.response_status = response.status_code
    record.response_body = json.loads(JSONRenderer().render(response.data) or b"null")
    headers = {name: response[name] for name in REPLAYED_HEADERS if response.has_header(name)}
    if response.content_type:
        headers["Content-Type"] = response.content_type
    record.response_headers = headers
    record.save(update_fields=["response_status", "response_body", "response_headers"])


def _free(record: IdempotencyKey) -> None:
    """Release a key whose request failed (never one that has an answer stored)."""
    try:
        IdempotencyKey.objects.filter(pk=record.pk, response_status__isnull=True).delete()
    except DatabaseError as exc:
        logger.warning("idempotency key %s not freed (%s); it expires on its own", record.pk, exc)


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate an APIView's ``post`` so repeats with the same key replay the first answer.

    The handler runs in one transaction (its answer is built before the commit).
    """

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            with transaction.atomic():
                return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > 255:
            raise ProblemError(
                "Idempotency-Key must be 1 to 255 characters.",
                status_code=400,
                code="invalid_idempotency_key",
            )
        fingerprint = request_fingerprint(request)
        record, created = _claim(user=request.user, key=key, fingerprint=fingerprint)
        if not created:
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
        try:
            with transaction.atomic():
                response = handler(view, request, *args, **kwargs)
                if response.status_code < 500:
                    _store(record, response)  # commits with the handler's writes
            return response
        except Exception as exc:
            failure: Exception = exc
        except BaseException:  # the worker is being stopped: nothing committed
            _free(record)
            raise
        # Nothing committed. Answer the error; keep a 4xx answer under the key, free it on 5xx.
        try:
            response = view.handle_exception(failure)  # re-raises what it cannot answer
        except BaseException:
            _free(record)
            raise
        if response.status_code >= 500:
            _free(record)
            return response
        try:
            _store(record, response)
        except DatabaseError as exc:
            logger.warning("answer of idempotency key %s not stored (%s)", record.pk, exc)
            _free(record)
        return response

    return wrapper


def idempotency_keys_purge() -> int:
    """Delete keys older than ``JOBTRAIL_IDEMPOTENCY_TTL``; return how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOBTRAIL_IDEMPOTENCY_TTL)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
