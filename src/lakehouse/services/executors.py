"""The executor registry: who is working, on what, and who went silent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from lakehouse.services.context import Context
from lakehouse.store.tables import executors


def list_executors(ctx: Context) -> list[dict[str, Any]]:
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = conn.execute(select(executors).order_by(executors.c.last_seen_at.desc())).mappings().all()
    out = []
    for r in rows:
        silent = (now - r["last_seen_at"]).total_seconds()
        out.append({"executor_id": r["id"], "capabilities": r["capabilities"], "first_seen_at": r["first_seen_at"],
                    "last_seen_at": r["last_seen_at"], "current_run_id": r["current_run_id"],
                    "current_phase": r["current_phase"], "silent_s": round(silent, 3),
                    "stale": silent > ctx.settings.executor_stale_s})
    return out
