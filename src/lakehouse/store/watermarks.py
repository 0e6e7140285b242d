"""Statements of ``watermarks`` (services/watermarks.py: advanced only where a publish is recorded)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from lakehouse.store import dialect
from lakehouse.store.tables import watermarks


@dataclass(frozen=True)
class Mark:
    source_table: str
    column: str
    value: str | None


def of_pipeline(conn: Connection, workspace_id: int, environment: str, pipeline: str) -> list[Mark]:
    t = watermarks
    rows = conn.execute(select(t.c.source_table, t.c.column_name, t.c.value).where(
        t.c.workspace_id == workspace_id, t.c.environment == environment, t.c.pipeline == pipeline)).all()
    return [Mark(source_table=str(r[0]), column=r[1], value=r[2]) for r in rows]


def put(conn: Connection, workspace_id: int, environment: str, pipeline: str, source_table: str, *,
        column: str, value: str | None, run_id: str, now: datetime) -> None:
    """Set one watermark (update the row, or insert it when there is none)."""
    t = watermarks
    values = {"column_name": column, "value": value, "run_id": run_id, "updated_at": now}
    res = conn.execute(update(t).where(
        t.c.workspace_id == workspace_id, t.c.environment == environment, t.c.pipeline == pipeline,
        t.c.source_table == source_table).values(**values))
    if res.rowcount == 0:
        dialect.insert_ignore(conn, t, [{"workspace_id": workspace_id, "environment": environment,
                                         "pipeline": pipeline, "source_table": source_table, **values}],
                              "workspace_id", "environment", "pipeline", "source_table")
