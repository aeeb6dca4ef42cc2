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
