"""The executor registry: who is working, on what, and who went silent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from lakehouse.services.auth import Principal
from lakehouse.services.context import Context
from lakehouse.store.tables import executors, runs


def list_executors(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    """Every executor; what it runs now is shown only when the principal can see that run's workspace."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(executors, runs.c.workspace_id.label("run_workspace_id"))
            .outerjoin(runs, runs.c.id == executors.c.current_run_id)
            .order_by(executors.c.last_seen_at.desc())).mappings().all()
    out = []
    for r in rows:
        silent = (now - r["last_seen_at"]).total_seconds()
        ws = r["run_workspace_id"]
        visible = r["current_run_id"] is not None and ws is not None and principal.can_see(ws)
        out.append({"executor_id": r["id"], "capabilities": r["capabilities"], "first_seen_at": r["first_seen_at"],
                    "last_seen_at": r["last_seen_at"], "current_run_id": r["current_run_id"] if visible else None,
                    "current_phase": r["current_phase"] if visible else None, "silent_s": round(silent, 3),
                    "stale": silent > ctx.settings.executor_stale_s})
    return out
