"""Create, read, list and cancel runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from lakehouse.domain.events import EventType
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import RunRequest
from lakehouse.domain.states import RUN_FINISHED, PhaseStatus, RunStatus
from lakehouse.services import audit, caps, code_policy, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, NotFound
from lakehouse.store import dialect, queue, run_reads
from lakehouse.store import runs as store
from lakehouse.store.types_public import Connection, IntegrityError, RowMapping


def create_run(ctx: Context, req: RunRequest, principal: Principal) -> tuple[dict[str, Any], bool]:
    """Create a run with its phases; returns (run, created). A repeated idempotency key returns the
    existing run and ``created=False``."""
    principal.require(Action.RUN_CREATE)
    ws_id = workspaces.resolve_for(ctx, principal, req.workspace, write=True)
    principal.require_in(Action.RUN_CREATE, ws_id)
    code_policy.check_run(ctx.settings, req)
    if req.idempotency_key:
        existing = _by_idempotency(ctx, ws_id, req.idempotency_key)
        if existing:
            return existing, False
    try:
        with ctx.db.write() as conn:
            first = req.phases[0].effective_capability if req.phases else None
            hold = caps.admit(conn, ws_id, req.spec_slug, first)  # over a queue cap: 429, or held
            run_id = _insert_run(conn, ctx.clock(), ws_id, req, principal.name, held=hold is not None)
            if hold is not None:
                caps.hold_run(conn, run_id, ws_id, hold, ctx.clock())
            audit.record(conn, ctx.clock(), principal, "run.create", "run", run_id, ws_id,
                         {"spec_slug": req.spec_slug, "git_sha": req.git_sha})
    except IntegrityError:
        existing = _by_idempotency(ctx, ws_id, req.idempotency_key) if req.idempotency_key else None
        if existing:
            return existing, False
        raise
    ctx.waker.ready()
    return get_run(ctx, run_id, principal), True


def _insert_run(conn: Connection, now: datetime, ws_id: int, req: RunRequest, created_by: str,
                held: bool = False) -> str:
    run_id = str(uuid.uuid4())
    store.insert(
        conn, run_id=run_id, workspace_id=ws_id, environment=req.environment, spec_slug=req.spec_slug,
        git_sha=req.git_sha, status=RunStatus.QUEUED.value, input_manifest=req.input_manifest,
        idempotency_key=req.idempotency_key, created_by=created_by, labels=req.labels, now=now,
        phases_=[store.NewPhase(name=p.name, type=p.type, capability=p.effective_capability, params=p.params,
                                timeout_s=p.timeout_s, max_attempts=p.max_attempts,
                                status=(PhaseStatus.QUEUED if i == 0 and not held else PhaseStatus.PENDING).value,
                                available_at=now if i == 0 and not held else None)  # ready at once unless held
                 for i, p in enumerate(req.phases)])
    queue.append_events(conn, run_id, [{
        "type": EventType.RUN_CREATED.value, "ts": now, "level": "info",
        "message": f"run of {req.spec_slug} created with {len(req.phases)} phases",
        "payload": {"spec_slug": req.spec_slug, "git_sha": req.git_sha, "environment": req.environment,
                    "phases": [p.name for p in req.phases], "created_by": created_by},
    }])
    dialect.notify(conn, queue.READY_CHANNEL)
    return run_id


def _by_idempotency(ctx: Context, ws_id: int, key: str) -> dict[str, Any] | None:
    with ctx.db.read() as conn:
        run_id = run_reads.id_by_idempotency_key(conn, ws_id, key)
        row = queue.get_run(conn, run_id) if run_id is not None else None
        return _render(conn, row) if row else None


def get_run(ctx: Context, run_id: str, principal: Principal) -> dict[str, Any]:
    with ctx.db.read() as conn:
        row = queue.get_run(conn, run_id)
        if row is None or not principal.can_see(row["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        return _render(conn, row)


def _render(conn: Connection, row: RowMapping) -> dict[str, Any]:
    ws_slug = queue.workspace_slug(conn, row["workspace_id"])
    return {
        "run_id": row["id"], "status": row["status"], "spec_slug": row["spec_slug"], "git_sha": row["git_sha"],
        "environment": row["environment"], "workspace": ws_slug, "created_at": row["created_at"],
        "started_at": row["started_at"], "finished_at": row["finished_at"], "created_by": row["created_by"],
        "idempotency_key": row["idempotency_key"], "input_manifest": row["input_manifest"],
        "error": row["error"], "labels": row["labels"], "last_seq": row["last_seq"],
        "held": caps.held_reason(conn, row["id"]) if row["status"] == RunStatus.QUEUED.value else None,
        "phases": [render_phase(p) for p in queue.run_phases(conn, row["id"])],
    }


def render_phase(p: RowMapping) -> dict[str, Any]:
    return {
        "name": p["name"], "type": p["type"], "capability": p["capability"], "status": p["status"],
        "attempt": p["attempt"], "max_attempts": p["max_attempts"], "timeout_s": p["timeout_s"],
        "params": p["params"], "executor_id": p["executor_id"], "available_at": p["available_at"],
        "claimed_at": p["claimed_at"], "started_at": p["started_at"], "finished_at": p["finished_at"],
        "lease_expires_at": p["lease_expires_at"], "progress": p["progress"],
        "output_manifest": p["output_manifest"], "error": p["error"],
    }


def list_runs(ctx: Context, principal: Principal, *, status: str | None = None, spec_slug: str | None = None,
              environment: str | None = None, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by (created_at, id) through ``before`` (a run id)."""
    with ctx.db.read() as conn:
        after: tuple[datetime, str] | None = None
        if before:
            anchor = queue.get_run(conn, before)
            if anchor is None or not principal.can_see(anchor["workspace_id"]):  # no existence oracle
                raise NotFound(f"run {before} not found", code="run_not_found")
            after = (anchor["created_at"], anchor["id"])
        rows = run_reads.list_runs(conn, principal.workspace_ids, status=status, spec_slug=spec_slug,
                                   environment=environment, before=after, limit=limit)
    return [{"run_id": r.id, "status": r.status, "spec_slug": r.spec_slug, "git_sha": r.git_sha,
             "environment": r.environment, "workspace": r.workspace, "created_at": r.created_at,
             "started_at": r.started_at, "finished_at": r.finished_at, "error": r.error} for r in rows]


def cancel_run(ctx: Context, run_id: str, principal: Principal, reason: str = "cancelled") -> dict[str, Any]:
    principal.require(Action.RUN_CANCEL)
    with ctx.db.write() as conn:
        row = queue.get_run(conn, run_id, lock=True)
        if row is None or not principal.can_see(row["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        principal.require_in(Action.RUN_CANCEL, row["workspace_id"])
        if RunStatus(row["status"]) in RUN_FINISHED:
            raise Conflict(f"run {run_id} is already {row['status']}", code="run_finished")
        now = ctx.clock()
        closed = queue.close_remaining(conn, run_id, PhaseStatus.CANCELLED, now)
        queue.set_run_status(conn, row, RunStatus.CANCELLED, now, error=reason)
        queue.append_events(conn, run_id, [{
            "type": EventType.RUN_CANCELLED.value, "ts": now, "level": "warning",
            "message": f"run cancelled by {principal.name}",
            "payload": {"by": principal.name, "reason": reason,
                        "revoked_leases": [p["name"] for p in closed if p["lease_token"]]},
        }])
        audit.record(conn, now, principal, "run.cancel", "run", run_id, row["workspace_id"], {"reason": reason})
    ctx.waker.run_event(run_id)
    return get_run(ctx, run_id, principal)


def read_events(ctx: Context, run_id: str, principal: Principal, after: int = 0, limit: int = 1000
                ) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        row = queue.get_run(conn, run_id)
        if row is None or not principal.can_see(row["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        return [render_event(e) for e in queue.read_events(conn, run_id, after, limit)]


def render_event(e: RowMapping) -> dict[str, Any]:
    return {"seq": e["seq"], "event_id": e["event_id"], "type": e["type"], "run_id": e["run_id"],
            "phase": e["phase"], "ts": e["ts"], "level": e["level"], "message": e["message"],
            "payload": e["payload"]}


def run_status(ctx: Context, run_id: str) -> str | None:
    with ctx.db.read() as conn:
        return run_reads.status_of(conn, run_id)
