"""The executor registry's writes outside the claim path: an executor that said goodbye, and
forgetting old ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from lakehouse.store.tables import executors, phases


def mark_stopped(conn: Connection, executor_id: str, now: datetime, reason: str) -> bool:
    """Record a clean stop in ``info`` (the row stays, shown as stopped); False if unknown."""
    row = conn.execute(select(executors.c.info).where(executors.c.id == executor_id)).first()
    if row is None:
        return False
    info: Any = row[0]
    merged = {**(info or {}), "stopped_at": now.isoformat(), "stop_reason": reason}
    conn.execute(update(executors).where(executors.c.id == executor_id)
                 .values(info=merged, last_seen_at=now, current_run_id=None, current_phase=None))
    return True


def forget(conn: Connection, *, executor_id: str | None = None, silent_before: datetime | None = None) -> list[str]:
    """Delete executors that hold no lease: one by id, or every one silent since ``silent_before``."""
    leased = select(phases.c.executor_id).where(phases.c.status.in_(["claimed", "running"]),
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
