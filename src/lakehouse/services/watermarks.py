"""Incremental-load watermarks, stored in the control plane and advanced only when a publish commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lakehouse.services.context import Context
from lakehouse.store import watermarks as store
from lakehouse.store.types_public import Connection


def current(ctx: Context, workspace_id: int, environment: str, pipeline: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        marks = store.of_pipeline(conn, workspace_id, environment, pipeline)
    return {m.source_table: {"column": m.column, "value": m.value} for m in marks}


def advance(conn: Connection, workspace_id: int, environment: str, pipeline: str, marks: dict[str, Any],
            run_id: str, now: datetime) -> None:
    """Set watermarks in the caller's transaction (the one that records the publish)."""
    for table, mark in marks.items():
        store.put(conn, workspace_id, environment, pipeline, table, column=mark["column"],
                  value=None if mark["value"] is None else str(mark["value"]), run_id=run_id, now=now)
