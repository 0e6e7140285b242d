"""Read a source database into Arrow: the read side of ingestion.

``open_source(url)`` connects to a PostgreSQL (``postgresql://…``, ``postgresql+psycopg://…``) or
SQLite (``sqlite:///path``) database and returns a ``Source``:

- ``read_table(table, columns=None, where_watermark=None)`` → ``pyarrow.Table`` ordered by ``id``.
  With ``where_watermark=(column, value)`` only rows with ``column >= value`` are read. The bound is
  **inclusive** on purpose: rows written in the same instant as the last watermark are read again
  instead of being missed, so callers keep the new ``max_value`` as the next watermark and dedupe by
  ``id`` (keeping the last version). Rows whose watermark column is NULL are only read by full reads.
- ``max_value(table, column)`` → the column's maximum as a Python value (``datetime``, ``Decimal``, …).
- ``ids(table)`` → every ``id`` as a sorted Arrow array, to detect hard deletes by comparison.
- ``schema(table)`` → ``[(column, arrow type)]`` in table order, to detect schema drift.

Types: numeric → ``decimal128(38, 10)`` with no float in between, JSON → its text, timestamps →
``timestamp[us]``, dates → ``date32`` (see ``arrow_types``). Errors: ``SourceUnavailable`` when the
database cannot be reached (retryable), ``SourceError`` for an unknown table or column or an
unsupported URL (not retryable); never a raw driver traceback.

A ``Source`` holds connections: close it (or use ``with``); it is not meant to be shared by threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.connectors.errors import SourceError, SourceUnavailable
from lakehouse.connectors.urls import SourceUrl, parse_url

Watermark = tuple[str, Any]

__all__ = ["Source", "SourceError", "SourceUnavailable", "Watermark", "open_source"]


class Source(ABC):
    """A readable source database. Use ``open_source`` to get one."""

    def __init__(self, url: SourceUrl) -> None:
        self.url = url
        self._schemas: dict[str, list[tuple[str, pa.DataType]]] = {}

    # --- what a dialect provides ----------------------------------------------------------------

    @abstractmethod
    def tables(self) -> list[str]:
        """Names of the readable tables (and views), sorted."""

    @abstractmethod
    def _load_schema(self, table: str) -> list[tuple[str, pa.DataType]]:
        """Columns of ``table``; an empty list when it does not exist."""

    @abstractmethod
    def _read(self, table: str, columns: list[str], order_by_id: bool,
              watermark: Watermark | None) -> pa.Table:
        """Rows of ``table`` as Arrow (names already checked)."""

    @abstractmethod
    def _max(self, table: str, column: str) -> Any:
        """``max(column)`` as a Python value, ``None`` for an empty table."""

    @abstractmethod
    def _count(self, table: str) -> int:
        """``count(*)`` of ``table``."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections."""

    # --- the interface --------------------------------------------------------------------------

    def schema(self, table: str) -> list[tuple[str, pa.DataType]]:
        """``[(column, arrow type)]`` in table order; ``SourceError`` for an unknown table."""
        if table not in self._schemas:
            columns = self._load_schema(table)
            if not columns:
                raise SourceError(f"unknown table {table!r} in {self.url.display}")
            self._schemas[table] = columns
        return list(self._schemas[table])

    def arrow_schema(self, table: str) -> pa.Schema:
        return pa.schema(self.schema(table))

    def read_table(self, table: str, columns: list[str] | None = None,
                   where_watermark: Watermark | None = None) -> pa.Table:
        """Rows of ``table`` ordered by ``id`` (when it has one); see the module doc for watermarks."""
        known = dict(self.schema(table))
        wanted = list(known) if columns is None else list(columns)
        self._check_columns(table, known, wanted)
        if where_watermark is not None:
            self._check_columns(table, known, [where_watermark[0]])
        return self._read(table, wanted, "id" in known, where_watermark)

    def max_value(self, table: str, column: str) -> Any:
        """The largest value of ``column`` (``None`` if the table is empty)."""
        self._check_columns(table, dict(self.schema(table)), [column])
        return self._max(table, column)

    def ids(self, table: str, column: str = "id") -> pa.Array:
        """Every value of the id column, sorted ascending."""
        result = self.read_table(table, [column]).column(column)
        return result.combine_chunks() if result.num_chunks != 1 else result.chunk(0)

    def count(self, table: str) -> int:
        """Number of rows in ``table``."""
        self.schema(table)
        return self._count(table)

    def _check_columns(self, table: str, known: dict[str, pa.DataType], wanted: list[str]) -> None:
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise SourceError(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                              f"in table {table!r} of {self.url.display}")

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sort_by_id(table: pa.Table) -> pa.Table:
    """``table`` ordered by its ``id`` column (returned as is when it already is)."""
    if table.num_rows < 2:
        return table
    ids = table.column("id").combine_chunks()
    if pc.all(pc.less_equal(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py():
        return table
    return table.take(pc.sort_indices(ids))


def open_source(url: str) -> Source:
    """Connect to the database at ``url``; raise ``SourceUnavailable`` if it cannot be reached."""
    parsed = parse_url(url)
    if parsed.kind == "postgres":
        from lakehouse.connectors.source_postgres import PostgresSource

        return PostgresSource(parsed)
    from lakehouse.connectors.source_sqlite import SqliteSource

    return SqliteSource(parsed)
