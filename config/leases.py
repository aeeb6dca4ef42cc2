"""Leases: the project's one way to take rows for a while, give them back, and check a hold.

A lease is a nullable timestamp column on the rows being worked on (``locked_until`` by
default). A row whose lease is NULL or over is free; ``claim`` takes free rows for ``duration``
in ONE statement::

    UPDATE t SET locked_until = now + duration [, more]      -- now: STATEMENT_TIMESTAMP()
    WHERE id IN (SELECT id FROM t WHERE <your filter> AND <free>
                 ORDER BY ... LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING t.*

so claimers running at once take disjoint rows without waiting for each other (SKIP LOCKED on
PostgreSQL; on SQLite the single statement is serialised by the database lock), and the rows
come back with the claim (no second read, no query per row). Related rows named in
``select_related`` are then read with one query per relation.

Leases run on the database's clock: on PostgreSQL the "is it free" test and the new end both
read ``STATEMENT_TIMESTAMP()``, so workers on hosts whose clocks differ still never hold one row
at once (with each claimer's own clock, one running 10 s ahead took rows whose lease had 10 s
left and sent them beside their holder). SQLite is embedded: its clock is the app's.
Claimers time their own work from a monotonic clock read before the claim (a lease lasts at
least ``duration`` from then), never by comparing ``until`` with their wall clock.

The lease's end is its own fencing token. A row is claimed only once its previous lease is over,
and the new lease ends ``duration`` after that moment, so every lease on a row ends strictly
later than every earlier one (the "is it free" test and the new end use the same ``now``).
Comparing ``locked_until`` with the end you were given therefore tells whether the row is still
yours, even when your lease lapsed and someone else took the row in between: ``held`` and
``release`` do exactly that comparison.

Use::

    claimed = leases.claim(Job.objects.filter(status="queued"), duration=timedelta(minutes=5),
                           limit=50, order_by=("created_at",))
    for row in claimed.rows: ...work...
    mine = leases.held(Job.objects.all(), {row.pk: claimed.until for row in claimed.rows},
                       lock=True)   # inside transaction.atomic(): locks the rows still yours
    leases.release(Job.objects.all(), [row.pk ...], until=claimed.until, status="done")

Pick the duration so the work (including any hard deadline of its own) always ends before the
lease does; a worker that dies simply lets its leases run out, and the rows become claimable.
Webhook deliveries (``webhooks.services.deliveries_claim_due``) and report builds
(``reports.services.report_build``, on ``Report.locked_until``) use it.

Work that holds its rows only for the length of one transaction needs no lease column:
``locked`` takes the free rows of a queryset with ``FOR UPDATE SKIP LOCKED`` (the relay's event
batches and the expiry's job batches), so the same rows are never worked on twice at once and
a crash gives them back with the rollback.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from config.rows import among

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Claimed(Generic[M]):
    rows: list[M]  # in no particular order
    until: datetime  # the lease's end: the token to give ``held`` and ``release``


def free(field: str = "locked_until", *, now: datetime | None = None) -> Q:
    """The rows whose lease ``field`` is unset or over at ``now`` (the database's clock unless
    given)."""
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now if now else Now()})


def locked(
    queryset: "QuerySet[M]",
    *,
    limit: int,
    order_by: Sequence[str] = (),
) -> "QuerySet[M]":
    """The first ``limit`` rows of ``queryset`` (in ``order_by`` order) that no other transaction
    holds, locked until the current transaction ends (``FOR UPDATE SKIP LOCKED``).

    Rows another transaction has locked are passed over, never waited for; only this model's
    rows are locked (``OF``), not those of joined tables. Evaluate it inside
    ``transaction.atomic()``.
    """
    return queryset.select_for_update(skip_locked=True, of=("self",)).order_by(*order_by)[:limit]


def claim(
    queryset: "QuerySet[M]",
    *,
    duration: timedelta,
    limit: int,
    order_by: Sequence[str] = (),
    field: str = "locked_until",
    values: Mapping[str, Any] | None = None,
    increment: Sequence[str] = (),
    select_related: Sequence[str] = (),
    now: datetime | None = None,
    reclaim: datetime | None = None,
) -> Claimed[M]:
    """Take up to ``limit`` free rows of ``queryset`` (in ``order_by`` order) for ``duration``.

    One statement: the rows are locked with SKIP LOCKED (rows another claimer is taking are
    passed over, never waited for), their lease set, ``values`` written and the ``increment``
    fields raised by one, and they come back as model instances with the new values.

    ``now``: the clock the lease starts from; by default the database's (PostgreSQL's
    ``STATEMENT_TIMESTAMP()``, the app's on SQLite). ``until`` is read back from the rows (an
    estimate from the app's clock when none was free). ``reclaim``: the end of a lease of your
    own that you could not give back (its token): rows still held by it are taken too.
    """
    if duration <= timedelta(0):
        raise ValueError("a lease needs a positive duration")
    model = queryset.model
    meta = model._meta
    db = queryset.db
    connection = connections[db]
    qn = connection.ops.quote_name
    # None: the database's clock, read in the statement
    start = now if now or connection.vendor == "postgresql" else timezone.now()
    if limit <= 0:
        return Claimed(rows=[], until=(start or timezone.now()) + duration)

    takeable = free(field, now=start)
    if reclaim is not None:
        takeable |= Q(**{field: reclaim})
    inner = queryset.filter(takeable).order_by(*order_by).values("pk")[:limit]
    inner_sql, inner_params = inner.query.get_compiler(db).as_sql()
    if connection.features.has_select_for_update_skip_locked:
        of = (qn(meta.db_table),) if connection.features.has_select_for_update_of else ()
        inner_sql += " " + connection.ops.for_update_sql(skip_locked=True, of=of)

    lease_field = _field(model, field)
    params: list[Any]
    if start is None:  # the same STATEMENT_TIMESTAMP() as the inner "is it free" test
        assignments = [f"{qn(lease_field.column)} = STATEMENT_TIMESTAMP() + %s"]
        params = [duration]
    else:
        assignments = [f"{qn(lease_field.column)} = %s"]
        params = [lease_field.get_db_prep_save(start + duration, connection)]
    for name, value in (values or {}).items():
        model_field = _field(model, name)
        assignments.append(f"{qn(model_field.column)} = %s")
        params.append(model_field.get_db_prep_save(value, connection))
    for name in increment:
        column = qn(_field(model, name).column)
        assignments.append(f"{column} = {column} + 1")
    columns = ", ".join(qn(str(f.column)) for f in meta.concrete_fields)
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {qn(str(meta.pk.column))} IN ({inner_sql}) RETURNING {columns}"
    )
    rows = list(model._default_manager.db_manager(db).raw(sql, [*params, *inner_params]))
    for name in select_related:
        _attach(rows, name, db)
    # every row has the same end; with none taken, an estimate nobody holds
    until = getattr(rows[0], lease_field.attname) if rows else (start or timezone.now()) + duration
    return Claimed(rows=rows, until=until)


def _field(model: type[Model], name: str) -> Any:
    model_field = model._meta.get_field(name)
    if not isinstance(model_field, Field) or not model_field.column:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return model_field


def _attach(rows: list[Any], name: str, db: str) -> None:
    """Load the ``name`` foreign key of every row with one query."""
    if not rows:
        return
    fk = _field(type(rows[0]), name)
    related = fk.related_model._default_manager.db_manager(db).in_bulk(
        {getattr(row, fk.attname) for row in rows}
    )
    for row in rows:
        setattr(row, name, related.get(getattr(row, fk.attname)))


def held(
    queryset: QuerySet[Any],
    leases: Mapping[Any, datetime],
    *,
    field: str = "locked_until",
    lock: bool = False,
) -> set[Any]:
    """The keys of ``leases`` (pk -> lease end) whose rows in ``queryset`` are still held by it.

    With ``lock`` (inside a transaction) the rows are locked, so they stay yours until it ends.
    One query, however many rows.
    """
    if not leases:
        return set()
    rows = queryset.filter(pk__in=among(queryset.model, list(leases), using=queryset.db))
    if lock:  # in primary-key order, as every other locker of these rows (no deadlock)
        rows = rows.select_for_update(of=("self",)).order_by("pk")
    return {pk for pk, until in rows.values_list("pk", field) if until == leases[pk]}


def release(
    queryset: QuerySet[Any],
    pks: Iterable[Any],
    *,
    until: datetime,
    field: str = "locked_until",
    **values: Any,
) -> int:
    """End the lease ``until`` on the rows of ``pks`` still held by it, writing ``values``.

    Rows whose lease lapsed and went to someone else are left alone. Returns how many were
    released (one UPDATE).
    """
    return int(
        queryset.filter(
            pk__in=among(queryset.model, list(pks), using=queryset.db), **{field: until}
        ).update(**{field: None}, **values)
    )
