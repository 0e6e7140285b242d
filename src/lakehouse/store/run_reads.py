"""Reads of runs for the Control Room and the CLI that the queue does not need: id prefixes, the
newest run that wrote a table."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from lakehouse.store.tables import runs


def ids_by_prefix(conn: Connection, prefix: str, workspace_ids: Collection[int] | None, limit: int = 5) -> list[str]:
    """Run ids that start with ``prefix``, in visible workspaces only (LIKE 'prefix%': collation-proof)."""
    stmt = select(runs.c.id).where(runs.c.id.startswith(prefix, autoescape=True))
    if workspace_ids is not None:
        stmt = stmt.where(runs.c.workspace_id.in_(sorted(workspace_ids)))
    found: list[str] = list(conn.execute(stmt.order_by(runs.c.id).limit(limit)).scalars())
    return [str(i) for i in found]
