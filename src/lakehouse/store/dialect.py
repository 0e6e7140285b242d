"""The differences between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, func, text
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore_stmt(conn: Connection, table: Table, *conflict_cols: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING <first key>: execute with a list of rows and count
    the rows returned to know how many were inserted."""
    mod: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    return (mod.insert(table).on_conflict_do_nothing(index_elements=list(conflict_cols))
            .returning(table.c[conflict_cols[0]]))


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]], *conflict_cols: str) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were inserted."""
    if not rows:
        return 0
    return len(conn.execute(insert_ignore_stmt(conn, table, *conflict_cols), rows).all())


def skip_locked(conn: Connection, stmt: Select[Any], *of: Any) -> Select[Any]:
    """FOR UPDATE SKIP LOCKED on Postgres; SQLite holds the write lock for the whole transaction."""
    if conn.dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True, of=list(of) or None)
    return stmt


def for_update(conn: Connection, stmt: Select[Any]) -> Select[Any]:
    if conn.dialect.name == "postgresql":
        return stmt.with_for_update()
    return stmt


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """Postgres NOTIFY, delivered at commit; a no-op on SQLite (the process wakes its own waiters).
    Notifications are collected and sent in one statement just before the commit (``flush_notify``)."""
    if conn.dialect.name == "postgresql":
        conn.info.setdefault("lakehouse_notify", set()).add((channel, payload))


def flush_notify(conn: Connection) -> None:
    pending = conn.info.pop("lakehouse_notify", None)
    if pending:
        items = sorted(pending)
        sql = "SELECT " + ", ".join(f"pg_notify(:c{i}, :p{i})" for i in range(len(items)))
        params = {k: v for i, (c, p) in enumerate(items) for k, v in ((f"c{i}", c), (f"p{i}", p))}
        conn.execute(text(sql), params)


def autovacuum_off(conn: Connection) -> bool:
    """Whether the PostgreSQL server runs without autovacuum (always False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    return str(conn.execute(text("SHOW autovacuum")).scalar()) != "on"


def advisory_xact_lock(conn: Connection, key: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def seconds_since(conn: Connection, start: Any, now: Any) -> Any:
    """SQL for the seconds elapsed from the ``start`` column to ``now`` (a bound UTC datetime)."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", now - start)
    return (func.julianday(now) - func.julianday(start)) * 86400.0
