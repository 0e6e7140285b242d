"""The differences between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, text
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]], *conflict_cols: str) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were inserted."""
    if not rows:
        return 0
    mod: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (mod.insert(table).on_conflict_do_nothing(index_elements=list(conflict_cols))
            .returning(table.c[conflict_cols[0]]))
    return len(conn.execute(stmt, rows).all())


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
    """Postgres NOTIFY, delivered at commit; a no-op on SQLite (the process wakes its own waiters)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


def advisory_xact_lock(conn: Connection, key: int) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
