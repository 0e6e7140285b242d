"""Statements of ``lineage_edges`` (services/lineage.py keeps the rules: names, the graph walk)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from lakehouse.store.tables import lineage_edges


@dataclass(frozen=True)
class EdgeRow:
    source: str
    target: str
    run_id: str | None
    phase: str | None
    created_at: datetime  # when the latest run and phase that produced it wrote it


@dataclass(frozen=True)
class NewEdge:
    source: str
    target: str


def upsert_edges(conn: Connection, workspace_id: int, environment: str, edges: Sequence[NewEdge],
                 run_id: str | None, phase: str | None, now: datetime) -> int:
    """Insert each edge once per (workspace, environment, source, target); an edge that exists takes the
    new run, phase and time. Returns how many were written."""
    if not edges:
        return 0
    rows = [{"workspace_id": workspace_id, "environment": environment, "source": e.source, "target": e.target,
             "run_id": run_id, "phase": phase, "created_at": now} for e in edges]
    mod: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = mod.insert(lineage_edges)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "environment", "source", "target"],
        set_={"run_id": stmt.excluded.run_id, "phase": stmt.excluded.phase, "created_at": stmt.excluded.created_at},
    )
    conn.execute(stmt, rows)
    return len(rows)


def edges_of(conn: Connection, workspace_id: int, environment: str) -> list[EdgeRow]:
    """Every edge of one workspace and environment."""
    t = lineage_edges
    rows = conn.execute(select(t.c.source, t.c.target, t.c.run_id, t.c.phase, t.c.created_at)
                        .where(t.c.workspace_id == workspace_id, t.c.environment == environment)).all()
    return [EdgeRow(source=r[0], target=r[1], run_id=r[2], phase=r[3], created_at=r[4]) for r in rows]
