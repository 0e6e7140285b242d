"""The executor registry's writes outside the claim path: who registered an executor, an executor
that said goodbye, and forgetting old ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from lakehouse.domain.states import PHASE_LEASED
from lakehouse.store.tables import executors, phases, runs


def listing(conn: Connection) -> list[dict[str, Any]]:
    """Every executor, most recently seen first, with the workspace of the run it works on now."""
    rows = conn.execute(
        select(executors, runs.c.workspace_id.label("run_workspace_id"))
        .outerjoin(runs, runs.c.id == executors.c.current_run_id)
        .order_by(executors.c.last_seen_at.desc())).mappings().all()
    return [dict(r) for r in rows]


def adopt(conn: Connection, executor_id: str, owner: str) -> None:
    """Record the account that registered ``executor_id`` (its first claim), unless one already is."""
    conn.execute(update(executors).where(executors.c.id == executor_id, executors.c.info.is_(None))
                 .values(info={"owner": owner}))


def info(conn: Connection, executor_id: str) -> dict[str, Any] | None:
    """The executor's ``info`` document ({} when it has none); None when the executor is unknown."""
    row = conn.execute(select(executors.c.info).where(executors.c.id == executor_id)).first()
    if row is None:
        return None
    doc: Any = row[0]
    return dict(doc) if isinstance(doc, dict) else {}


def mark_stopped(conn: Connection, executor_id: str, now: datetime, reason: str) -> bool:
    """Record a clean stop in ``info`` (the row stays, shown as stopped); False if unknown."""
    doc = info(conn, executor_id)
    if doc is None:
        return False
    merged = {**doc, "stopped_at": now.isoformat(), "stop_reason": reason}
    conn.execute(update(executors).where(executors.c.id == executor_id)
                 .values(info=merged, last_seen_at=now, current_run_id=None, current_phase=None))
    return True


def forget(conn: Connection, *, executor_id: str | None = None, silent_before: datetime | None = None) -> list[str]:
    """Delete executors that hold no lease: one by id, or every one silent since ``silent_before``."""
    leased = select(phases.c.executor_id).where(phases.c.status.in_(sorted(s.value for s in PHASE_LEASED)),
                                                phases.c.executor_id.is_not(None))
    stmt = select(executors.c.id).where(executors.c.id.not_in(leased))
    if executor_id is not None:
        stmt = stmt.where(executors.c.id == executor_id)
    if silent_before is not None:
        stmt = stmt.where(executors.c.last_seen_at < silent_before)
    found: list[Any] = list(conn.execute(stmt).scalars().all())
    ids = [str(i) for i in found]
    if ids:
        conn.execute(delete(executors).where(executors.c.id.in_(ids)))
    return ids
