"""The executor registry: who is working, on what, and who went silent."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from lakehouse.domain.roles import Action
from lakehouse.services import audit
from lakehouse.services.auth import Principal
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from lakehouse.store import executor_rows
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
        info = r["info"] if isinstance(r["info"], dict) else {}
        stopped = _stopped_since(info, r["last_seen_at"]) and r["current_run_id"] is None
        stale = silent > ctx.settings.executor_stale_s and not stopped
        out.append({"executor_id": r["id"], "capabilities": r["capabilities"], "first_seen_at": r["first_seen_at"],
                    "last_seen_at": r["last_seen_at"], "current_run_id": r["current_run_id"] if visible else None,
                    "current_phase": r["current_phase"] if visible else None, "silent_s": round(silent, 3),
                    "stale": stale, "stopped": stopped,
                    "state": "stopped" if stopped else ("stale" if stale else "online"),
                    "stop_reason": info.get("stop_reason") if stopped else None})
    return out


def _stopped_since(info: dict[str, Any], last_seen: datetime) -> bool:
    """A goodbye counts until the executor calls again (a call after it moves ``last_seen_at`` on)."""
    try:
        at = datetime.fromisoformat(str(info["stopped_at"]))
    except (KeyError, ValueError):
        return False
    return at >= last_seen


def mark_stopped(ctx: Context, principal: Principal, executor_id: str, reason: str = "stopped cleanly") -> bool:
    """An executor that shuts down cleanly (SIGTERM, idle exit) says so: shown as stopped, not stale."""
    principal.require(Action.EXECUTE)
    with ctx.db.write() as conn:
        return executor_rows.mark_stopped(conn, executor_id, ctx.clock(), reason)


def forget(ctx: Context, principal: Principal, *, executor_id: str | None = None,
           silent_for: timedelta | None = None) -> list[str]:
    """Remove stopped or long-silent executors from the registry (admins); one holding a lease stays.
    An executor that calls again simply registers anew."""
    principal.require(Action.ADMIN)
    if executor_id is None and silent_for is None:
        raise InvalidInput("forget one executor by id, or those silent for a while", code="invalid")
    with ctx.db.write() as conn:
        gone = executor_rows.forget(conn, executor_id=executor_id,
                                    silent_before=ctx.clock() - silent_for if silent_for is not None else None)
        for ex_id in gone:
            audit.record(conn, ctx.clock(), principal, "executor.forget", "executor", ex_id, None, {})
    return gone
