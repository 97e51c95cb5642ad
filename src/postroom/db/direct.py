"""Hot statements run straight on the SQLite driver, compiled once.

SQLAlchemy's execution machinery (execution context, events, result metadata) costs ~35 µs a statement on SQLite,
where the statement itself takes a few microseconds; the accept path and the delivery worker run several per
message. A ``Prepared`` statement is an ordinary Core statement: on PostgreSQL it runs through
``Connection.execute`` as usual; on SQLite it is compiled once per set of parameter names and then executed on the
connection's own driver connection, in whatever transaction SQLAlchemy has open there. Bind and result types are
applied exactly as SQLAlchemy applies them, so both paths take and return the same values.

Supported: SELECT, INSERT (scalar Python-side column defaults included), UPDATE and DELETE, with or without
RETURNING, with named ``bindparam`` values and literal values. Not supported (refused when compiled): expanding
``IN`` lists and callable defaults; such statements stay on ``Connection.execute``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

_REQUIRED = object()


class DirectRow(tuple):  # type: ignore[type-arg]
    """Base of the per-statement row classes: attribute access by column name, and ``_mapping`` like a Row."""

    __slots__ = ()
    _fields: tuple[str, ...]

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


class DirectResult:
    """The part of ``CursorResult``'s interface the query modules use, over rows already fetched."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def fetchall(self) -> list[Any]:
        return self._rows

    all = fetchall

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when one or none was required")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class _Compiled:
    """One statement compiled for SQLite with one set of parameter names."""

    __slots__ = ("sql", "arguments", "row_type", "converters", "returns_rows")

    def __init__(self, statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> None:
        compiled = cast(ClauseElement, statement).compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("expanding IN lists are not supported here; list the values with or_() instead")
        if compiled.update_prefetch:
            raise ValueError("Python-side onupdate values are not supported here")
        defaults: dict[str, Any] = {}
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not getattr(default, "is_scalar", False):
                raise ValueError(f"column {column.key}: only scalar Python-side defaults are supported here")
            defaults[column.key] = default.arg  # type: ignore[attr-defined]
        fixed = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
        fixed.update(defaults)
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[assignment]
        self.sql = compiled.string
        self.arguments: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...] = tuple(
            (name, fixed.get(name, _REQUIRED) if name not in keys else _REQUIRED, processors.get(name))
            for name in compiled.positiontup or ()
        )
        columns = compiled._result_columns
        self.returns_rows = bool(columns)
        names = [entry.keyname for entry in columns]
        self.row_type: type[DirectRow] = type(
            "DirectRow", (namedtuple("_Fields", names, rename=True), DirectRow), {"__slots__": ()}
        )
        self.converters = tuple(
            (index, processor)
            for index, entry in enumerate(columns)
            if (processor := entry.type._cached_result_processor(dialect, None)) is not None
        )

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, fixed, processor in self.arguments:
            value = params[name] if fixed is _REQUIRED else fixed
            values.append(value if processor is None or value is None else processor(value))
        return tuple(values)

    def rows(self, fetched: Sequence[tuple[Any, ...]]) -> list[Any]:
        make, row_type, converters = tuple.__new__, self.row_type, self.converters
        if not converters:
            return [make(row_type, row) for row in fetched]
        out = []
        for row in fetched:
            values = list(row)
            for index, processor in converters:
                values[index] = processor(values[index])
            out.append(make(row_type, values))
        return out


class Prepared:
    """A Core statement that runs on the SQLite driver directly (compiled once per parameter names)."""

    __slots__ = ("statement", "_compiled")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Compiled] = {}

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """A ``DirectResult`` on SQLite, SQLAlchemy's ``CursorResult`` elsewhere (the same methods either way)."""
        params = params or {}
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, dict(params))
        keys = tuple(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _Compiled(self.statement, conn.dialect, keys)
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.execute(compiled.sql, compiled.bind(params))
        try:
            fetched = cursor.fetchall() if compiled.returns_rows else []
            return DirectResult(compiled.rows(fetched), cursor.rowcount)
        finally:
            cursor.close()
