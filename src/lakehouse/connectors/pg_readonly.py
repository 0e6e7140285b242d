"""One SQL statement on a PostgreSQL source, read-only: what a ``sql`` job with ``connection:`` runs.

Four locks, each enough against a write on its own for an honest driver:

- the text must be one read-only statement (one statement, starting with SELECT / WITH / VALUES /
  TABLE / SHOW / EXPLAIN, no write keyword; the lexical check of ``services.sql``);
- it is sent with the extended query protocol (a prepared statement), which PostgreSQL refuses for
  more than one command, so no ``; COMMIT; …`` can follow it;
- it runs in a ``READ ONLY`` transaction opened by the driver, whose mode can no longer change once
  ``SET LOCAL statement_timeout`` has run in it;
- the session starts with ``default_transaction_read_only`` on.

A statement timeout bounds it, and at most ``max_rows`` rows come back (more is an error, never a
silent truncation). The user of the connection should still be a read-only role: a superuser's
SELECT can call functions that read the server's files.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa

from lakehouse.connectors.errors import SourceError, SourceUnavailable, first_line


def check_statement(sql: str) -> None:
    """SourceError unless ``sql`` is one read-only statement."""
    from lakehouse.services.errors import InvalidInput
    from lakehouse.services.sql import check_read_only_trino

    try:
        check_read_only_trino(sql)  # lexical, dialect-neutral: one statement, a read verb, no write keyword
    except InvalidInput as exc:
        raise SourceError(exc.message) from None


def query(url: str, sql: str, *, timeout_s: float, max_rows: int, connect_timeout_s: int = 10) -> pa.Table:
    """The rows of one read-only statement as an Arrow table (column names as PostgreSQL gives them)."""
    import psycopg

    check_statement(sql)
    timeout_ms = max(1, int(timeout_s * 1000))
    try:
        conn = psycopg.connect(url, connect_timeout=connect_timeout_s, autocommit=False,
                               options="-c default_transaction_read_only=on")
    except psycopg.Error as exc:
        raise SourceUnavailable(f"cannot connect: {first_line(exc)}") from None
    try:
        conn.read_only = True  # the driver opens every transaction with BEGIN READ ONLY
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            cur.execute(sql.strip().rstrip(";"), prepare=True)  # extended protocol: one command only
            if cur.description is None:
                raise SourceError("the statement returned no rows (only queries may run on a source)")
            names = [d.name for d in cur.description]
            rows = cur.fetchmany(max_rows + 1)
        conn.rollback()
    except psycopg.errors.QueryCanceled:
        raise SourceError(f"the statement ran longer than its timeout ({timeout_s:g} s)") from None
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise SourceError(f"the source is read-only here: {first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        raise SourceUnavailable(first_line(exc)) from None
    except psycopg.Error as exc:
        raise SourceError(first_line(exc)) from None
    finally:
        conn.close()
    if len(rows) > max_rows:
        raise SourceError(f"the statement returned more than {max_rows} rows")
    return to_arrow(names, rows)


def to_arrow(names: list[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    """Rows as Arrow, each column's type inferred from its values (a column of NULLs only is text;
    values Arrow cannot type, such as ranges or arrays of mixed kinds, become their text)."""
    if len(set(names)) != len(names):
        raise SourceError(f"the statement returns duplicate column names: {', '.join(names)}")
    columns = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        elif pa.types.is_decimal(arr.type) and any(isinstance(v, Decimal) and not v.is_finite() for v in values):
            arr = pa.array([None if v is None else str(v) for v in values], pa.string())
        columns[name] = arr
    return pa.table(columns) if columns else pa.table({})
