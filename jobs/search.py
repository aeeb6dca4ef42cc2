"""The staff console's job searches, across companies, each served by an index on PostgreSQL.

- ``meta:key=value`` (``meta:a.b=value`` for a nested key): jobs whose metadata holds that
  value. PostgreSQL: ``metadata @> '{"key": "value"}'``, served by the GIN index
  ``job_metadata_path`` (``jsonb_path_ops``, jobs migration 0012). Other databases (SQLite)
  compare the key's value row by row.
- External ids: the push communication id or request id of a push result, or an id registered
  as a push correlation, exactly; each through its own index (migration 0012).
"""

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTransform

from config import strict_json

from .models import Job, PushCorrelation, PushResult

METADATA_PREFIX = "meta:"
# jobs an external id may select (a request id covers the pushes of one request: one job or a
# few; a limit keeps the IN list short whatever the data)
EXTERNAL_MATCHES = 100


@dataclass(frozen=True)
class MetadataTerm:
    path: tuple[str, ...]
    value: str


def parse_metadata_term(term: str) -> MetadataTerm | None:
    """``meta:key=value`` as a path and a value; None for any other term (or no key)."""
    if term[: len(METADATA_PREFIX)].lower() != METADATA_PREFIX:
        return None
    key, sep, value = term[len(METADATA_PREFIX) :].partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        return None
    return MetadataTerm(path=path, value=value.strip())


def _candidates(value: str) -> list[Any]:
    """The JSON values a typed value may mean: the string, and a number/true/false/null."""
    values: list[Any] = [value]
    try:  # NaN, Infinity, 1e999: Python's json reads them, JSON (and the database) has none
        parsed = strict_json.loads(value)
    except ValueError:
        return values
    if parsed is None or isinstance(parsed, bool | int | float):
        values.append(parsed)
    return values


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document: Any = value
    for key in reversed(path):
        document = {key: document}
    return dict(document)


def jobs_with_metadata(queryset: QuerySet[Job], term: MetadataTerm) -> QuerySet[Job]:
    """The jobs of ``queryset`` whose metadata holds ``term.value`` at ``term.path``."""
    values = _candidates(term.value)
    if connections[queryset.db].features.supports_json_field_contains:
        matches = Q()
        for value in values:
            matches |= Q(metadata__contains=_nested(term.path, value))
        return queryset.filter(matches)
    expression: Any = "metadata"
    for key in term.path:
        expression = KeyTransform(key, expression)
    matches = Q()
    for value in values:
        matches |= Q(metadata_search_value=value)
    return queryset.alias(metadata_search_value=expression).filter(matches)


def push_results_by_external_id(queryset: QuerySet[PushResult], value: str) -> QuerySet[Any]:
    """The push results of ``queryset`` with this push communication id or request id (exact:
    ids are the sender's, case included), through ``push_result_communication`` and
    ``push_result_request`` (``request_id <> ''`` lets that partial index serve its half)."""
    return queryset.filter(
        Q(push_communication_id=value) | (Q(request_id=value) & ~Q(request_id=""))
    )


# jobs (of different companies) a search by job code takes, at most
JOB_CODE_MATCHES = 100


def job_ids_by_code(value: str, *, limit: int = JOB_CODE_MATCHES) -> list[uuid.UUID]:
    """Jobs whose code is ``value`` in any case (a code is unique per company: one job per
    company at most), at most ``limit``; through ``job_code_upper_pattern``."""
    value = value.strip()
    if not value:
        return []
    return list(
        Job.objects.filter(code__iexact=value).order_by().values_list("pk", flat=True)[:limit]
    )


def job_ids_by_external_id(value: str) -> list[uuid.UUID]:
    """Jobs with a push result or a registered correlation carrying this id (exact match).

    One query: push results by ``push_communication_id`` or ``request_id``
    (``push_results_by_external_id``), and correlations by value (``push_correlation_value``).
    """
    value = value.strip()
    if not value or len(value) > 255:
        return []
    results = (
        push_results_by_external_id(PushResult.objects.all(), value)
        .order_by()
        .values_list("job_id", flat=True)
    )
    correlations = (
        PushCorrelation.objects.filter(value=value).order_by().values_list("job_id", flat=True)
    )
    return list(results.union(correlations)[:EXTERNAL_MATCHES])
