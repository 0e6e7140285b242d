"""The executor registry: who is working, on what, who went silent and who stopped cleanly.

An executor registers by claiming under an id it chooses; the account (token) of that first claim
is recorded as its owner (``info.owner``). Only that account may say the executor stopped: the id
alone proves nothing, since any executor may send any id. Executors sharing one account (the shared
pool's token) are one identity to the server and may mark each other; give each its own account to
tell them apart. An admin may mark or forget any executor."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import audit
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, InvalidInput, NotFound
from lakehouse.store import executor_rows

MAX_REASON = 200


def list_executors(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    """Every executor; what it runs now is shown only when the principal can see that run's workspace."""
    principal.require(Action.RUN_READ)
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = executor_rows.listing(conn)
    out = []
    for r in rows:
        silent = (now - r["last_seen_at"]).total_seconds()
        ws = r["run_workspace_id"]
        visible = r["current_run_id"] is not None and ws is not None and principal.can_see(ws)
        info = r["info"] if isinstance(r["info"], dict) else {}
        stopped = stopped_cleanly(info, r["last_seen_at"]) and r["current_run_id"] is None
        stale = silent > ctx.settings.executor_stale_s and not stopped
        out.append({"executor_id": r["id"], "capabilities": r["capabilities"], "first_seen_at": r["first_seen_at"],
                    "last_seen_at": r["last_seen_at"], "current_run_id": r["current_run_id"] if visible else None,
                    "current_phase": r["current_phase"] if visible else None, "silent_s": round(silent, 3),
                    "stale": stale, "stopped": stopped,
                    "state": "stopped" if stopped else ("stale" if stale else "online"),
                    "stop_reason": info.get("stop_reason") if stopped else None})
    return out


def stopped_cleanly(info: Any, last_seen: datetime) -> bool:
    """Whether the executor said goodbye; it counts until the executor calls again (a call after it
    moves ``last_seen_at`` on)."""
    if not isinstance(info, dict):
        return False
    try:
        at = datetime.fromisoformat(str(info["stopped_at"]))
    except (KeyError, ValueError):
        return False
    return at >= last_seen


def mark_stopped(ctx: Context, principal: Principal, executor_id: str, reason: str = "stopped cleanly"
                 ) -> dict[str, Any]:
    """An executor that shuts down cleanly (SIGTERM, ``--once`` done, idle exit) says so: shown as
    stopped, not stale. Only the account that registered it (or an admin) may; an unknown id is
    ``executor_not_found``, another account's executor ``not_your_executor``."""
    principal.require(Action.EXECUTE)
    reason = " ".join(reason.split())[:MAX_REASON] or "stopped cleanly"
    with ctx.db.write() as conn:
        info = executor_rows.info(conn, executor_id)
        if info is None:
            raise NotFound(f"executor {executor_id} not found", code="executor_not_found")
        if not principal.can(Action.ADMIN) and info.get("owner") != principal.name:
            raise Forbidden(f"executor {executor_id} was registered by another account", code="not_your_executor")
        executor_rows.mark_stopped(conn, executor_id, ctx.clock(), reason)
    return {"executor_id": executor_id, "state": "stopped", "stop_reason": reason}


def forget(ctx: Context, principal: Principal, *, executor_id: str | None = None,
           silent_for: timedelta | None = None) -> list[str]:
    """Remove stopped or long-silent executors from the registry (admins, audited); one holding a
    lease stays. An executor that calls again simply registers anew."""
    principal.require(Action.ADMIN)
    if executor_id is None and silent_for is None:
        raise InvalidInput("forget one executor by id, or those silent for a while", code="invalid")
    with ctx.db.write() as conn:
        gone = executor_rows.forget(conn, executor_id=executor_id,
                                    silent_before=ctx.clock() - silent_for if silent_for is not None else None)
        for ex_id in gone:
            audit.record(conn, ctx.clock(), principal, "executor.forget", "executor", ex_id, None, {})
    return gone
