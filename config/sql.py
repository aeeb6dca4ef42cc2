"""Set-based writes the ORM has no method for."""

from typing import Any

from django.db import connections
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
