"""SQLite source through the standard library, opened read-only.

Column types come from the declared types (``arrow_types.sqlite_arrow_type``). Decimal columns are
read as text and cast to ``decimal128`` by Arrow, so a value stored as a decimal string (as the Odoo
seed stores money) stays exact; dates and timestamps stored as ISO text are parsed by Arrow.
Watermark comparisons happen in SQLite: ISO text compares correctly as text, decimal columns are
compared numerically.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from lakehouse.connectors.arrow_types import sqlite_arrow_type
from lakehouse.connectors.errors import SourceError, SourceUnavailable, first_line
from lakehouse.connectors.sources import Source, Watermark
from lakehouse.connectors.urls import SourceUrl


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _to_arrow(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(arrow_type) or pa.types.is_temporal(arrow_type):
        return pa.array([_as_text(v) for v in values], pa.string()).cast(arrow_type)
    if pa.types.is_boolean(arrow_type):
        return pa.array([None if v is None else bool(v) for v in values], arrow_type)
    if pa.types.is_string(arrow_type):
        return pa.array([_as_text(v) for v in values], arrow_type)
    return pa.array(values, arrow_type)


def _to_python(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_decimal(arrow_type):
        return Decimal(_as_text(value) or "0")
    if pa.types.is_timestamp(arrow_type):
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_date(arrow_type):
        return date.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_boolean(arrow_type):
        return bool(value)
    return value


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # naive columns hold UTC (as Odoo's)
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)  # only compared numerically, see _read
    return value


class SqliteSource(Source):
    def __init__(self, url: SourceUrl) -> None:
        super().__init__(url)
        assert url.path is not None
        if not url.path.is_file():
            raise SourceUnavailable(f"cannot open {url.display}: no such file")
        try:
            self._conn = sqlite3.connect(f"file:{url.path}?mode=ro", uri=True)
            self._conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SourceUnavailable(f"cannot open {url.display}: {first_line(exc)}") from None

    def _query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(statement, params).fetchall()
        except sqlite3.OperationalError as exc:
            message = first_line(exc)
            if "locked" in message or "unable to open" in message or "disk i/o" in message.lower():
                raise SourceUnavailable(f"{self.url.display}: {message}") from None
            raise SourceError(f"{self.url.display}: {message}") from None
        except sqlite3.Error as exc:
            raise SourceError(f"{self.url.display}: {first_line(exc)}") from None

    def tables(self) -> list[str]:
        rows = self._query("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY name")
        return [r[0] for r in rows]

    def _load_schema(self, table: str) -> list[tuple[str, pa.DataType]]:
        if table not in self.tables():
            return []
        rows = self._query(f"PRAGMA table_info({_ident(table)})")
        return [(r[1], sqlite_arrow_type(r[2] or "")) for r in rows]

    def _read(self, table: str, columns: list[str], order_by_id: bool,
              watermark: Watermark | None) -> pa.Table:
        types = dict(self.schema(table))
        query = f"SELECT {', '.join(_ident(c) for c in columns)} FROM {_ident(table)}"
        params: tuple[Any, ...] = ()
        if watermark is not None:
            column, value = watermark
            target = f"CAST({_ident(column)} AS REAL)" if pa.types.is_decimal(types[column]) else _ident(column)
            query += f" WHERE {target} >= ?"
            params = (_param(value),)
        if order_by_id:
            query += ' ORDER BY "id"'
        rows = self._query(query, params)
        data = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        try:
            arrays = [_to_arrow(list(values), types[c]) for c, values in zip(columns, data, strict=True)]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{self.url.display}: table {table!r} holds a value that does not fit its "
                              f"declared type: {first_line(exc)}") from None
        return pa.Table.from_arrays(arrays, schema=pa.schema([(c, types[c]) for c in columns]))

    def _max(self, table: str, column: str) -> Any:
        arrow_type = dict(self.schema(table))[column]
        if pa.types.is_decimal(arrow_type):
            query = (f"SELECT {_ident(column)} FROM {_ident(table)} WHERE {_ident(column)} IS NOT NULL "
                     f"ORDER BY CAST({_ident(column)} AS REAL) DESC LIMIT 1")
        else:
            query = f"SELECT max({_ident(column)}) FROM {_ident(table)}"
        rows = self._query(query)
        return _to_python(rows[0][0], arrow_type) if rows else None

    def _count(self, table: str) -> int:
        return int(self._query(f"SELECT count(*) FROM {_ident(table)}")[0][0])

    def close(self) -> None:
        self._conn.close()
