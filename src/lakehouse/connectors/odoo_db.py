"""Write access to the database the Odoo seed fills: connect (creating a missing PostgreSQL database),
create and drop tables, bulk-load rows (COPY on PostgreSQL, ``executemany`` on SQLite) and run the
small statements ``mutate`` needs, with one placeholder style (``?``) for both.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from lakehouse.connectors.errors import SourceError, SourceUnavailable, first_line
from lakehouse.connectors.odoo_schema import Table
from lakehouse.connectors.urls import SourceUrl


def _sqlite_value(value: Any) -> Any:
    """Decimals as plain decimal strings (never floats, never ``-0.00``), dates and times as ISO text."""
    if isinstance(value, Decimal):
        return format(value + 0, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


@contextmanager
def driver_errors(display: str) -> Iterator[None]:
    """Turn driver exceptions into ``SourceUnavailable`` (connection trouble) or ``SourceError``."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise SourceUnavailable(f"{display}: {first_line(exc)}") from None
    except sqlite3.OperationalError as exc:
        message = first_line(exc)
        if "locked" in message or "unable to open" in message or "disk" in message:
            raise SourceUnavailable(f"{display}: {message}") from None
        raise SourceError(f"{display}: {message}") from None
    except (psycopg.Error, sqlite3.Error) as exc:
        raise SourceError(f"{display}: {first_line(exc)}") from None


def _decimal_text(value: Decimal) -> str:
    return format(value + 0, "f")  # + 0 turns -0.00 into 0.00


def _timestamp_text(value: datetime) -> str:
    return value.isoformat(sep=" ")


_SQLITE_CONVERT: dict[str, Callable[[Any], Any]] = {
    "num": _decimal_text, "date": date.isoformat, "ts": _timestamp_text, "bool": int}


def _sqlite_converter(table: Table) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    converters = [(i, _SQLITE_CONVERT[kind]) for i, (_, kind) in enumerate(table.columns)
                  if kind in _SQLITE_CONVERT]

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for i, fn in converters:
            value = values[i]
            if value is not None:
                values[i] = fn(value)
        return tuple(values)

    return convert


class SeedDb:
    """One connection and transaction on the target database."""

    def __init__(self, url: SourceUrl, create: bool = False) -> None:
        self.url = url
        self.dialect = url.kind
        self._pg: psycopg.Connection[Any] | None = None
        self._lite: sqlite3.Connection | None = None
        # PostgreSQL loads run on one background thread so the server's COPY work overlaps with the
        # Python that generates the next batch (two batches in flight at most).
        self._loader: ThreadPoolExecutor | None = None
        self._inflight: deque[Future[None]] = deque()
        if url.kind == "postgres":
            self._pg = _connect_pg(url, create)
        else:
            self._lite = _connect_sqlite(url, create)

    # --- generic statements ---------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement with ``?`` placeholders; return its rows (empty if none)."""
        if self._pg is not None:
            cur = self._pg.execute(sql.replace("?", "%s"), tuple(params))
            return cur.fetchall() if cur.description else []
        assert self._lite is not None
        cur2 = self._lite.execute(sql, tuple(_sqlite_value(p) for p in params))
        return cur2.fetchall()

    def existing_tables(self, names: Iterable[str]) -> list[str]:
        wanted = list(names)
        if self.dialect == "postgres":
            rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        else:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        present = {r[0] for r in rows}
        return [n for n in wanted if n in present]

    def drop(self, names: Iterable[str]) -> None:
        for name in names:
            self.execute(f'DROP TABLE IF EXISTS "{name}"' + (" CASCADE" if self.dialect == "postgres" else ""))

    def create(self, tables: Iterable[Table]) -> None:
        for table in tables:
            for statement in table.ddl(self.dialect):
                self.execute(statement)

    # --- bulk load ------------------------------------------------------------------------------

    def load(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        """Append ``rows`` (tuples in column order) to ``table``; on PostgreSQL in the background."""
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        if self._pg is not None:
            if self._loader is None:
                self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odoo-seed-copy")
            while len(self._inflight) >= 2:
                self._inflight.popleft().result()
            self._inflight.append(self._loader.submit(self._copy, f'COPY "{table.name}" ({cols}) FROM STDIN',
                                                      rows))
            return
        assert self._lite is not None
        convert = _sqlite_converter(table)
        marks = ", ".join("?" for _ in table.columns)
        self._lite.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', map(convert, rows))

    def _copy(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        assert self._pg is not None
        with self._pg.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def wait_loads(self) -> None:
        """Wait for the background loads (and raise the first error of one)."""
        while self._inflight:
            self._inflight.popleft().result()

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        cols = [c for c in table.column_names if c in row]
        names = ", ".join(f'"{c}"' for c in cols)
        self.execute(f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" for _ in cols)})',
                     [row[c] for c in cols])

    def finish(self, tables: Iterable[Table]) -> None:
        """Indexes, serial sequences past the loaded ids, statistics; then commit."""
        self.wait_loads()
        for table in tables:
            for statement in table.index_ddl():
                self.execute(statement)
            self.sync_sequence(table.name)
        self.commit()
        if self.dialect == "postgres":
            assert self._pg is not None
            self._pg.autocommit = True
            self._pg.execute("ANALYZE")
            self._pg.autocommit = False

    def sync_sequence(self, table: str) -> None:
        if self.dialect == "postgres":
            self.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                         f'COALESCE((SELECT max(id) FROM "{table}"), 0) + 1, false)')

    def commit(self) -> None:
        if self._pg is not None:
            self._pg.commit()
        elif self._lite is not None:
            self._lite.commit()

    def close(self) -> None:
        if self._loader is not None:
            for future in self._inflight:
                future.cancel()
            self._loader.shutdown(wait=True)
            self._loader = None
        if self._pg is not None:
            self._pg.close()
        if self._lite is not None:
            self._lite.close()

    def __enter__(self) -> SeedDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_pg(url: SourceUrl, create: bool) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url.conninfo, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing = "does not exist" in str(exc) and f'"{url.dbname}"' in str(exc)
        if not (create and missing):
            raise SourceUnavailable(f"cannot connect to {url.display}: {first_line(exc)}") from None
    try:  # create the missing database through the maintenance database
        with psycopg.connect(url.with_dbname("postgres").conninfo, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{url.dbname}"')
        return psycopg.connect(url.conninfo, connect_timeout=5)
    except psycopg.Error as exc:
        raise SourceUnavailable(f"cannot create database {url.display}: {first_line(exc)}") from None


def _connect_sqlite(url: SourceUrl, create: bool) -> sqlite3.Connection:
    assert url.path is not None
    try:
        if create:
            url.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(url.path)
        else:
            conn = sqlite3.connect(f"file:{url.path}?mode=rw", uri=True)
        conn.execute("PRAGMA synchronous = OFF")
        return conn
    except (OSError, sqlite3.Error) as exc:
        raise SourceUnavailable(f"cannot open {url.display}: {first_line(exc)}") from None
