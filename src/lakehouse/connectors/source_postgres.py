"""PostgreSQL source: metadata through psycopg, bulk reads through DuckDB's postgres extension.

Bulk reads go through ``postgres_query``, which streams the result of a query that runs on the
PostgreSQL side. That query casts what DuckDB would otherwise map lossily: unconstrained ``numeric``
(Odoo's money) becomes ``numeric(38,10)`` so DuckDB reads a DECIMAL(38,10) — exact, no double in
between — and ``jsonb``, enums, arrays, uuids become their text. The result arrives as Arrow.

Metadata (tables, column types, ``max``, ``count``) runs on a separate autocommit psycopg
connection; the two connections do not share a snapshot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql

from lakehouse.connectors.arrow_types import pg_arrow_type, pg_select_expr
from lakehouse.connectors.duck import load_extension
from lakehouse.connectors.errors import SourceError, SourceUnavailable, first_line
from lakehouse.connectors.sources import Source, Watermark, sort_by_id
from lakehouse.connectors.urls import SourceUrl

_COLUMNS = """
SELECT a.attname, bt.typname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE n.nspname = current_schema() AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresSource(Source):
    def __init__(self, url: SourceUrl) -> None:
        super().__init__(url)
        try:
            self._conn = psycopg.connect(url.conninfo, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            raise SourceUnavailable(f"cannot connect to {url.display}: {first_line(exc)}") from None
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._typnames: dict[str, dict[str, str]] = {}

    # --- psycopg side ---------------------------------------------------------------------------

    def _query(self, statement: str | sql.Composed, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(statement, params).fetchall()
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"{self.url.display}: {first_line(exc)}") from None
        except psycopg.Error as exc:
            raise SourceError(f"{self.url.display}: {first_line(exc)}") from None

    def tables(self) -> list[str]:
        return [r[0] for r in self._query(_TABLES)]

    def _load_schema(self, table: str) -> list[tuple[str, pa.DataType]]:
        rows = self._query(_COLUMNS, (table,))
        self._typnames[table] = {name: typname for name, typname, _ in rows}
        return [(name, pg_arrow_type(typname, formatted)) for name, typname, formatted in rows]

    def _max(self, table: str, column: str) -> Any:
        return self._query(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column),
                                                                    sql.Identifier(table)))[0][0]

    def _count(self, table: str) -> int:
        return int(self._query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))[0][0])

    def _literal(self, value: Any, typname: str) -> str:
        if isinstance(value, datetime) and value.tzinfo is not None and typname == "timestamp":
            value = value.astimezone(UTC).replace(tzinfo=None)  # naive columns hold UTC (as Odoo's)
        return sql.Literal(value).as_string(self._conn)

    # --- DuckDB side ----------------------------------------------------------------------------

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            con = duckdb.connect()
            try:
                load_extension(con, "postgres_scanner")
                dsn = self.url.conninfo.replace("'", "''")
                con.execute(f"ATTACH '{dsn}' AS src (TYPE postgres, READ_ONLY)")
            except duckdb.Error as exc:
                con.close()
                raise SourceUnavailable(f"cannot connect to {self.url.display}: {first_line(exc)}") from None
            self._duck = con
        return self._duck

    def _read(self, table: str, columns: list[str], order_by_id: bool,
              watermark: Watermark | None) -> pa.Table:
        arrow_types = dict(self.schema(table))
        typnames = self._typnames[table]
        fetched = ["id", *columns] if order_by_id and "id" not in columns else columns
        select = ", ".join(pg_select_expr(c, typnames[c], arrow_types[c]) for c in fetched)
        query = f"SELECT {select} FROM {_ident(table)}"
        if watermark is not None:
            column, value = watermark
            query += f" WHERE {_ident(column)} >= {self._literal(value, typnames[column])}"
        try:
            result = self._duckdb().execute("SELECT * FROM postgres_query('src', ?)", [query]).to_arrow_table()
        except duckdb.Error as exc:
            message = first_line(exc)
            if "connect" in message.lower():
                raise SourceUnavailable(f"{self.url.display}: {message}") from None
            raise SourceError(f"{self.url.display}: {message}") from None
        if order_by_id:  # sorted here, not by PostgreSQL: the heap is usually in id order already
            result = sort_by_id(result)
            if fetched is not columns:
                result = result.drop_columns(["id"])
        target = pa.schema([(c, arrow_types[c]) for c in columns])
        return result if result.schema.equals(target) else result.cast(target)

    def close(self) -> None:
        if self._duck is not None:
            self._duck.close()
            self._duck = None
        self._conn.close()
