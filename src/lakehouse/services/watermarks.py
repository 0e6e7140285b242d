"""Incremental-load watermarks, stored in the control plane and advanced only when a publish commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from lakehouse.services.context import Context
from lakehouse.store import dialect
from lakehouse.store.tables import watermarks


def current(ctx: Context, workspace_id: int, environment: str, pipeline: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(watermarks.c.source_table, watermarks.c.column_name, watermarks.c.value).where(
            watermarks.c.workspace_id == workspace_id, watermarks.c.environment == environment,
            watermarks.c.pipeline == pipeline)).all()
    return {str(t): {"column": c, "value": v} for t, c, v in rows}


def advance(conn: Connection, workspace_id: int, environment: str, pipeline: str, marks: dict[str, Any],
            run_id: str, now: datetime) -> None:
    """Set watermarks in the caller's transaction (the one that records the publish)."""
    for table, mark in marks.items():
        values = {"column_name": mark["column"], "value": None if mark["value"] is None else str(mark["value"]),
                  "run_id": run_id, "updated_at": now}
        res = conn.execute(update(watermarks).where(
            watermarks.c.workspace_id == workspace_id, watermarks.c.environment == environment,
            watermarks.c.pipeline == pipeline, watermarks.c.source_table == table).values(**values))
        if res.rowcount == 0:
            dialect.insert_ignore(conn, watermarks, [{"workspace_id": workspace_id, "environment": environment,
                                                      "pipeline": pipeline, "source_table": table, **values}],
                                  "workspace_id", "environment", "pipeline", "source_table")
