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

The hot writes (a job change: UPDATE the job, INSERT its event) go through ``Writer``: the
same fixed statements Django's compiler would send, built once per field list, with each
value prepared by its field (``pre_save``, so ``auto_now`` stamps; ``get_db_prep_save``, so
JSON, UUIDs and timestamps are adapted exactly as ``Model.save`` does). No model signals are
sent; the models written this way have no receivers.

    JOB_WRITER = Writer(Job)
    JOB_WRITER.update(job, ["status", "updated_at"])   # UPDATE ... WHERE id = job.pk
    EVENT_WRITER.insert(event)                         # INSERT ... RETURNING id
"""

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from django.db import NotSupportedError, connections
from django.db.models import (
    CharField,
    Field,
    IntegerField,
    JSONField,
    Model,
    PositiveIntegerField,
    SlugField,
    TextField,
)
from django.db.models.expressions import DatabaseDefault, RawSQL

M = TypeVar("M", bound=Model)
L = TypeVar("L", bound=Model)


@contextmanager
def hot_cursor(connection: Any) -> Iterator[Any]:
    """The cursor for a fixed hot statement: on PostgreSQL its parameters are bound on the
    server and psycopg prepares it after ``prepare_threshold`` runs
    (``config.postgresql.base.DatabaseWrapper.hot_cursor``); elsewhere Django's own cursor.

    A prepared statement whose result columns a migration changed fails with "cached plan must
    not change result type" on every run: the connection is then closed at the end of the
    request (or task), and its replacement prepares the statement afresh.
    """
    make = getattr(connection, "hot_cursor", None)
    cursor = make() if make is not None else connection.cursor()
    try:
        with cursor:
            yield cursor
    except NotSupportedError as exc:
        if "cached plan must not change result type" in str(exc):
            connection.close_at = 0  # Django closes it in close_if_unusable_or_obsolete
        raise


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


# Field classes (exactly these, not subclasses) whose ``pre_save`` is reading the attribute
# and whose preparation leaves a plain value as it is (a ``str`` or None: CharField's and
# TextField's ``to_python``) or needs only the backend's adaptation (an ``int``: IntegerField's
# ``get_prep_value`` is ``int(value)``, the same value; ``get_db_prep_value(prepared=True)``
# still applies ``adapt_integerfield_value``, PostgreSQL's typed integer wrappers).
_PLAIN_STR = (CharField, SlugField, TextField)
_PLAIN_INT = (IntegerField, PositiveIntegerField)
_SLOW, _STR, _INT = 0, 1, 2


def _plain_kind(field: "Field[Any, Any]") -> int:
    kind = type(field)
    if kind in _PLAIN_STR:
        return _STR
    if kind in _PLAIN_INT:
        return _INT
    return _SLOW


def _prepared(
    fields: "Sequence[tuple[Field[Any, Any], str, int]]", obj: Model, add: bool, connection: Any
) -> list[Any]:
    """Each field's value of ``obj`` as ``Model.save`` would send it.

    A plain ``str``/None of a text field or ``int``/None of an integer field skips the calls
    that would return it unchanged; every other value (JSON, UUIDs, timestamps, foreign keys,
    a ``str`` subclass such as a choices enum) goes through ``pre_save`` and
    ``get_db_prep_save`` as before.
    """
    params: list[Any] = []
    for field, attname, kind in fields:
        if kind:
            value = obj.__dict__.get(attname, _MISSING)
            if value is None:
                params.append(None)
                continue
            value_type = type(value)
            if kind == _STR and value_type is str:
                params.append(value)
                continue
            if kind == _INT and value_type is int:
                params.append(field.get_db_prep_value(value, connection, prepared=True))
                continue
        value = field.pre_save(obj, add)
        if add and isinstance(value, DatabaseDefault):
            raise TypeError(f"{type(obj).__name__}.{field.name}: set it before a Writer insert")
        params.append(field.get_db_prep_save(value, connection))
    return params


_MISSING = object()


class Writer(Generic[M]):
    """Fixed UPDATE and INSERT statements for one model's hot writes (see the module doc)."""

    def __init__(self, model: type[M], *, using: str = "default") -> None:
        self.model = model
        self.using = using
        opts = model._meta
        self.table = str(opts.db_table)
        self.pk = opts.pk
        self.auto_pk = bool(getattr(opts.pk, "db_returning", False))
        self.insert_fields = [
            f for f in opts.concrete_fields if not (self.auto_pk and f is opts.pk)
        ]
        self._insert_plan = [(f, f.attname, _plain_kind(f)) for f in self.insert_fields]
        self._update_sql: dict[
            tuple[str, ...], tuple[str, list[tuple[Field[Any, Any], str, int]]]
        ] = {}
        self._insert_sql: dict[tuple[str, ...], str] = {}

    def _field(self, name: str) -> "Field[Any, Any]":
        field = self.model._meta.get_field(name)
        assert isinstance(field, Field), name  # a column, not a reverse relation
        return field

    def _quote(self, name: str) -> str:
        return connections[self.using].ops.quote_name(name)

    def plan(self, fields: Sequence[str]) -> "list[tuple[Field[Any, Any], str, int]]":
        """How ``_prepared`` reads ``fields`` of an instance."""
        return [(f, f.attname, _plain_kind(f)) for f in map(self._field, fields)]

    def update_statement(self, fields: Sequence[str]) -> str:
        """``UPDATE <table> SET <field> = %s, ... WHERE <pk> = %s``."""
        quote = self._quote
        assignments = ", ".join(f"{quote(str(self._field(n).column))} = %s" for n in fields)
        pk = quote(str(self.pk.column))
        return f"UPDATE {quote(self.table)} SET {assignments} WHERE {pk} = %s"

    def insert_statement(self, unless_taken: Sequence[str] = ()) -> str:
        """``INSERT INTO <table> (<every column>) VALUES (%s, ...)``, with ``ON CONFLICT
        (<unless_taken>) DO NOTHING``; no ``RETURNING``."""
        quote = self._quote
        columns = ", ".join(quote(str(f.column)) for f in self.insert_fields)
        values = ", ".join("%s" for _ in self.insert_fields)
        sql = f"INSERT INTO {quote(self.table)} ({columns}) VALUES ({values})"
        if unless_taken:
            target = ", ".join(quote(str(self._field(n).column)) for n in unless_taken)
            sql += f" ON CONFLICT ({target}) DO NOTHING"
        return sql

    def update(self, obj: M, fields: Sequence[str]) -> int:
        """``obj.save(update_fields=fields)`` for an existing row; returns the rows updated."""
        key = tuple(fields)
        if key not in self._update_sql:
            self._update_sql[key] = (self.update_statement(key), self.plan(key))
        sql, plan = self._update_sql[key]
        connection = connections[self.using]
        params = _prepared(plan, obj, False, connection)
        params.append(self.pk.get_db_prep_value(obj.pk, connection))
        with hot_cursor(connection) as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def insert(self, obj: M, *, unless_taken: Sequence[str] = ()) -> bool:
        """``obj.save(force_insert=True)``: one INSERT, the generated primary key set on ``obj``.

        ``unless_taken``: the fields of a unique constraint; a row that would repeat its values
        is not inserted (``ON CONFLICT (...) DO NOTHING``, PostgreSQL and SQLite) and the
        answer is False, with no error to roll back to a savepoint. Any other constraint
        still raises.
        """
        connection = connections[self.using]
        key = tuple(unless_taken)
        if key not in self._insert_sql:
            sql = self.insert_statement(key)
            if self.auto_pk and connection.features.can_return_columns_from_insert:
                sql += f" RETURNING {self._quote(str(self.pk.column))}"
            self._insert_sql[key] = sql
        params = _prepared(self._insert_plan, obj, True, connection)
        with hot_cursor(connection) as cursor:
            cursor.execute(self._insert_sql[key], params)
            if key and cursor.rowcount == 0:
                return False
            if self.auto_pk:
                if connection.features.can_return_columns_from_insert:
                    row = cursor.fetchone()
                    new_pk = row[0] if row else None
                else:  # pragma: no cover - SQLite before 3.35
                    new_pk = cursor.lastrowid
                setattr(obj, self.pk.attname, new_pk)
        obj._state.adding = False
        obj._state.db = self.using
        return True


class _WithLog(Generic[M, L]):
    """One row's write and the INSERT of its log row as ONE statement (PostgreSQL's
    data-modifying ``WITH``): ``WITH changed AS (<write> RETURNING 1) INSERT INTO log (...)
    SELECT %s, ... FROM changed RETURNING id``. A single statement is atomic on its own: no
    transaction (no ``BEGIN``/``COMMIT`` round trips), and the log row exists only if the
    write took place. The values are prepared by their fields, as ``Writer`` prepares them;
    the log row is built after the row's values are prepared (``auto_now`` stamps included),
    so what it records of the row is what was written."""

    def __init__(self, rows: "Writer[M]", log: "Writer[L]") -> None:
        self.rows, self.log = rows, log
        self._sql: str | None = None

    def _write_sql(self) -> str:
        raise NotImplementedError

    def _write_params(self, obj: M, connection: Any) -> list[Any]:
        raise NotImplementedError

    def sql(self) -> str:
        if self._sql is None:
            log, quote = self.log, self.rows._quote
            connection = connections[self.rows.using]

            def typed(field: "Field[Any, Any]") -> str:
                # an explicit cast of a parameter in a SELECT list: text for character columns
                # (an explicit varchar(n) cast would cut a long value; the INSERT's assignment
                # to the column still refuses it), the column's own type otherwise
                kind = str(field.cast_db_type(connection))
                return "%s::text" if kind.startswith("varchar") else f"%s::{kind}"

            columns = ", ".join(quote(str(f.column)) for f in log.insert_fields)
            values = ", ".join(typed(f) for f in log.insert_fields)
            self._sql = (
                f"WITH changed AS ({self._write_sql()} RETURNING 1) "
                f"INSERT INTO {quote(log.table)} ({columns}) SELECT {values} FROM changed "
                f"RETURNING {quote(str(log.pk.column))}"
            )
        return self._sql

    def _write(self, obj: M, params: list[Any], log_entry: Callable[[], L]) -> L | None:
        connection = connections[self.rows.using]
        entry = log_entry()
        params.extend(_prepared(self.log._insert_plan, entry, True, connection))
        with hot_cursor(connection) as cursor:
            cursor.execute(self.sql(), params)
            row = cursor.fetchone()
        if row is None:
            return None
        setattr(entry, self.log.pk.attname, row[0])
        for written in (obj, entry):
            written._state.adding = False
            written._state.db = self.rows.using
        return entry


class VersionedChange(_WithLog[M, L]):
    """An optimistic change: the row's UPDATE only while its ``versions`` columns still hold
    what was read, with its log row (``_WithLog``); nothing is written if another change came
    first. The row's new version is among ``fields``, set by the caller; the other version
    columns are those another writer changes without it (the job's push counts)."""

    def __init__(
        self, rows: "Writer[M]", fields: Sequence[str], versions: Sequence[str], log: "Writer[L]"
    ) -> None:
        super().__init__(rows, log)
        self.fields, self.versions = tuple(fields), tuple(versions)
        self._plan = rows.plan(fields)

    def _write_sql(self) -> str:
        quote, rows = self.rows._quote, self.rows
        unchanged = "".join(f" AND {quote(str(rows._field(n).column))} = %s" for n in self.versions)
        return rows.update_statement(self.fields) + unchanged

    def write(self, obj: M, read: Sequence[Any], log_entry: Callable[[], L]) -> L | None:
        """Save ``obj``'s ``fields`` and insert ``log_entry()`` if ``obj``'s row still holds
        ``read`` (the ``versions`` values read); the saved log entry, or None (nothing
        written) if another change came first."""
        connection = connections[self.rows.using]
        params = _prepared(self._plan, obj, False, connection)
        params.append(self.rows.pk.get_db_prep_value(obj.pk, connection))
        params.extend(read)
        return self._write(obj, params, log_entry)


class NewWithLog(_WithLog[M, L]):
    """A new row (not inserted if it would repeat the values of ``unless_taken``, a unique
    constraint: ``ON CONFLICT DO NOTHING``) with its log row (``_WithLog``); the row's primary
    key is set by the caller (a UUID)."""

    def __init__(self, rows: "Writer[M]", log: "Writer[L]", *, unless_taken: Sequence[str]):
        super().__init__(rows, log)
        assert not rows.auto_pk, "the new row's primary key is the caller's"
        self.unless_taken = tuple(unless_taken)

    def _write_sql(self) -> str:
        return self.rows.insert_statement(self.unless_taken)

    def write(self, obj: M, log_entry: Callable[[], L]) -> L | None:
        """Insert ``obj`` and ``log_entry()``; the saved log entry, or None (nothing
        written) if ``obj`` would repeat a row's ``unless_taken`` values."""
        connection = connections[self.rows.using]
        params = _prepared(self.rows._insert_plan, obj, True, connection)
        return self._write(obj, params, log_entry)


def among(model: type[Model], pks: Sequence[Any], *, using: str = "default") -> Any:
    """The value of a ``pk__in`` filter over many rows: on PostgreSQL ONE array parameter
    (``IN (SELECT unnest(%s::<type>[]))``), elsewhere the list itself.

    A statement with hundreds of placeholders is long, and psycopg converts a long statement's
    placeholders with regular expressions on every run (it caches only short ones): marking a
    relay batch of 500 events spent more time there than in PostgreSQL.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return list(pks)
    pk = model._meta.pk
    assert pk is not None
    return RawSQL(f"SELECT unnest(%s::{pk.db_type(connection)}[])", (list(pks),))


def insert_many(model: type[M], rows: Sequence[dict[str, Any]], *, using: str = "default") -> None:
    """INSERT ``rows`` (each a dict of field names or attnames to values, the same keys in all).

    On PostgreSQL ONE ``INSERT ... SELECT FROM unnest(...)`` with one array per column, sent in
    binary with the parameters bound on the server: no model instance per row, no literal to
    build and escape element by element (Django's ``bulk_create`` spent most of an outcome
    batch's time there). JSON values are serialized by their field's encoder and cast once.
    Elsewhere ``bulk_create``. No signals are sent and no primary keys come back.
    """
    if not rows:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.db_manager(using).bulk_create(model(**row) for row in rows)
        return
    meta = model._meta
    qn = connection.ops.quote_name
    columns: list[str] = []
    selects: list[str] = []
    arrays: list[str] = []
    params: list[list[Any]] = []
    for name in rows[0]:
        field = meta.get_field(name)
        assert isinstance(field, Field) and field.column
        column = qn(field.column)
        columns.append(column)
        if isinstance(field, JSONField):
            selects.append(f"{column}::jsonb")
            arrays.append("%b::text[]")
            params.append([json.dumps(row[name], cls=field.encoder) for row in rows])
        else:
            selects.append(column)
            arrays.append(f"%b::{field.db_type(connection)}[]")
            params.append([field.get_db_prep_save(row[name], connection) for row in rows])
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM unnest({', '.join(arrays)}) AS r({', '.join(columns)})"
    )
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, params)
