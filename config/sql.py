"""Set-based writes the ORM has no method for."""

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import connections, transaction
from django.db.models import Field, Model, QuerySet


def insert_from_select(model: type[Model], columns: dict[str, Any], queryset: QuerySet[Any]) -> int:
    """``INSERT INTO <model> (<columns>) SELECT <expressions> FROM <queryset>``; return the count.

    ``columns`` maps field names of ``model`` to expressions over ``queryset``'s rows (``F``,
    ``Value``, ``Subquery``...): one statement writes a row per row of the queryset, and the ORM
    compiles the expressions for the database in use. Fields left out get their column's
    default or NULL (a Python-side ``default=`` is not applied).
    """
    aliases = {f"c{index}": expression for index, expression in enumerate(columns.values())}
    select = queryset.order_by().values(**aliases)
    connection = connections[select.db]
    sql, params = select.query.get_compiler(using=select.db).as_sql()
    quote = connection.ops.quote_name
    targets = []
    for name in columns:
        field = model._meta.get_field(name)
        if not isinstance(field, Field) or not field.column:
            raise ValueError(f"{model.__name__}.{name} is not a column")
        targets.append(quote(field.column))
    names = ", ".join(quote(alias) for alias in aliases)
    statement = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(targets)}) "
        f"SELECT {names} FROM ({sql}) AS {quote('source_rows')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def lock_all(queryset: QuerySet[Any]) -> int:
    """Lock every row of ``queryset`` in primary-key order (``FOR UPDATE``) inside the current
    transaction; return how many. The rows stay in the database: ``SELECT count(*)`` over the
    locking select, so a million rows cost no memory here. Waits for rows others hold. On a
    database without row locks (SQLite: its writes are serialised) it only counts."""
    connection = connections[queryset.db]
    rows = queryset.order_by("pk").values("pk")
    if connection.features.has_select_for_update:
        rows = rows.select_for_update(of=("self",))
    sql, params = rows.query.get_compiler(using=queryset.db).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ({sql}) AS {connection.ops.quote_name('locked')}", params
        )
        return int(cursor.fetchone()[0])


def delete_rows(queryset: QuerySet[Any]) -> int:
    """``DELETE FROM <table> WHERE pk IN (<queryset>)``; return the count.

    One statement, no rows loaded and no signals: Django's ``delete()`` collects every row (and
    every row of a cascade) in Python first, which took 36 s and their memory for an endpoint
    with 400,000 deliveries. Delete the dependent rows first (their foreign keys are checked
    at commit)."""
    model = queryset.model
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    sql, params = queryset.order_by().values("pk").query.get_compiler(using=queryset.db).as_sql()
    table, pk = quote(model._meta.db_table), quote(str(model._meta.pk.column))
    with connection.cursor() as cursor:
        # (the subquery wrapped once more: MySQL refuses to read the table it deletes from)
        cursor.execute(f"DELETE FROM {table} WHERE {pk} IN (SELECT * FROM ({sql}) AS gone)", params)
        return int(cursor.rowcount)


# Rows a retention purge deletes per transaction: locks held for milliseconds, memory for a
# list of primary keys, and what was deleted stays deleted if the run stops. (1,000 keys are
# well within SQLite's bound on a statement's parameters.)
DELETE_BATCH = 1000


class Deleted(NamedTuple):
    rows: int  # rows of the queryset deleted
    dependents: int  # rows referencing them, deleted first
    done: bool  # False: the deadline passed with rows left


def delete_oldest(
    queryset: QuerySet[Any],
    *,
    order_by: str | Sequence[str],
    deadline: float,
    dependents: Sequence[tuple[type[Model], str]] = (),
    size: int | None = None,
) -> Deleted:
    """Delete ``queryset``'s rows in ``order_by`` order, ``size`` per transaction, until none
    are left or ``deadline`` (``time.monotonic()``) has passed; ``size`` defaults to
    ``DELETE_BATCH``.

    Each batch is locked (``FOR UPDATE SKIP LOCKED``: a row another transaction holds, one being
    redelivered say, is left for a later run; the queryset's filter is read under the lock, so a
    row that changed meanwhile is not taken), then the rows of ``dependents`` (model, foreign
    key field) referencing it are deleted, then the batch: one short transaction each, never
    the whole backlog at once. Django's ``delete()`` loaded every row of a cascade into memory
    in one transaction: 200,000 deliveries took 27 s and 1.2 GB.

    Ordered by one ascending field that is never NULL, each batch starts where the last one
    ended (``field >=`` its last value): rows the filter passes over on the way (old failed
    deliveries kept, say) are read once per run, not once per batch.
    """
    size = size or DELETE_BATCH
    order = (order_by,) if isinstance(order_by, str) else tuple(order_by)
    resume = order[0] if len(order) == 1 and not order[0].startswith("-") else None
    if resume and queryset.model._meta.get_field(resume).null:
        resume = None  # NULLs sort apart (first or last by database) and match no >=
    rows = others = 0
    remaining = queryset
    while True:
        with transaction.atomic(using=queryset.db):
            batch = remaining.order_by(*order).select_for_update(skip_locked=True, of=("self",))
            taken = list(batch.values_list("pk", resume or "pk")[:size])
            keys = [key for key, _ in taken]
            if resume and taken:
                remaining = queryset.filter(**{f"{resume}__gte": taken[-1][1]})
            if keys:
                for model, field in dependents:
                    others += delete_rows(
                        model._base_manager.using(queryset.db).filter(**{f"{field}__in": keys})
                    )
                rows += delete_rows(
                    queryset.model._base_manager.using(queryset.db).filter(pk__in=keys)
                )
        if len(keys) < size:
            return Deleted(rows, others, True)
        if time.monotonic() >= deadline:
            return Deleted(rows, others, False)
