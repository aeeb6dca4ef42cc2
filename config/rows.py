"""Model instances out of one hand-written SELECT, for the few reads on the API's hot path.

Compiling a queryset costs Django's ORM 0.3 to 0.6 ms of CPU per query (``select_related``
and a filter or two), more than the rest of a polling request. The hot reads (the API
client behind a token, a job with its report) are therefore one fixed SQL statement each,
and this module turns its rows back into ordinary model instances: every concrete column of
the model, in field order, with Django's own database converters applied (so SQLite's UUIDs,
timestamps and JSON come back exactly as the ORM would return them).

    JOB = Columns(Job, "j")
    sql = f"SELECT {JOB.sql} FROM jobs_job j WHERE j.id = %s"
    job = JOB.instance(row, 0)   # None when the joined row is absent (NULL primary key)
"""

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


class Columns(Generic[M]):
    """One model's columns in a SELECT under table alias ``alias``."""

    def __init__(self, model: type[M], alias: str, *, using: str = "default") -> None:
        self.model = model
        self.alias = alias
        self.using = using
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.width = len(self.fields)
        self.pk_index = self.fields.index(model._meta.pk)
        self._sql: str | None = None
        self._converters: list[tuple[int, list[Converter], Any]] | None = None

    @property
    def sql(self) -> str:
        if self._sql is None:
            quote = connections[self.using].ops.quote_name
            self._sql = ", ".join(f"{self.alias}.{quote(str(f.column))}" for f in self.fields)
        return self._sql

    def _field_converters(self) -> list[tuple[int, list[Converter], Any]]:
        if self._converters is None:
            connection = connections[self.using]
            converters = []
            for i, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                found = connection.ops.get_db_converters(column) + field.get_db_converters(
                    connection
                )
                if found:
                    converters.append((i, found, column))
            self._converters = converters
        return self._converters

    def instance(self, row: Sequence[Any], start: int = 0) -> M | None:
        values = list(row[start : start + self.width])
        if values[self.pk_index] is None:
            return None
        connection = connections[self.using]
        for i, converters, column in self._field_converters():
            value = values[i]
            for convert in converters:
                value = convert(value, column, connection)
            values[i] = value
        return self.model.from_db(self.using, self.attnames, values)

    def param(self, field_name: str, value: Any) -> Any:
        """``value`` as a query parameter for column ``field_name`` (e.g. SQLite's hex UUIDs).

        Raises ``ValidationError`` / ``ValueError`` for a value the field cannot hold.
        """
        field = self.model._meta.get_field(field_name)
        assert isinstance(field, Field), field_name  # a column, not a reverse relation
        return field.get_db_prep_value(field.to_python(value), connections[self.using])
