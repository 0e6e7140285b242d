"""Environments and promotion. A job version runs in ``dev`` freely; it reaches ``stage`` (from dev) and
``prod`` (from stage) only by promotion through the gates its workspace configures: the last N
finished runs of that version in the lower environment succeeded, their data-quality checks passed,
and — when asked — an approver with the right role, not the author, approved. Runs in stage and prod
(manual, scheduled, triggered, backfilled) always use the version promoted there.

Every promotion, refusal, approval and rejection is in the audit log.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from lakehouse.domain.jobs import (
    DEFAULT_GATES,
    LOWER_ENVIRONMENT,
    PROMOTED_ENVIRONMENTS,
    Gates,
    JobStatus,
    PromotionStatus,
    approval_refusal,
    check_target,
    evaluate_gates,
)
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from lakehouse.store import jobs as store
from lakehouse.store.types_public import Connection

GATE_FIELDS = tuple(Gates.model_fields)


def _target(environment: str, field: str = "to") -> str:
    try:
        return check_target(environment)
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_environment",
                           details=[{"field": field, "message": str(exc)}]) from None


def _workspace(ctx: Context, principal: Principal, workspace: str, action: Action, write: bool = False) -> int:
    principal.require(action)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=write)
    principal.require_in(action, ws_id)
    return ws_id


def _job(conn: Connection, ws_id: int, name: str) -> Any:
    row = store.get_job(conn, ws_id, name)
    if row is None or row["status"] != JobStatus.ACTIVE.value:
        raise NotFound(f"job {name!r} not found", code="job_not_found")
    return row


def gates_of(conn: Connection, ws_id: int) -> dict[str, Gates]:
    """The gates of every promoted environment (the defaults where the workspace configured none)."""
    configured = store.get_gates(conn, ws_id)
    return {env: Gates.model_validate({k: configured[env][k] for k in GATE_FIELDS}) if env in configured
            else DEFAULT_GATES[env] for env in PROMOTED_ENVIRONMENTS}


def _evaluate(conn: Connection, job_id: int, version: int, environment: str, gates: Gates) -> list[dict[str, Any]]:
    lower = LOWER_ENVIRONMENT[environment]
    runs = store.finished_runs_of_version(conn, job_id, version, lower, gates.min_runs)
    in_lower = lower == "dev" or store.ever_promoted(conn, job_id, version, lower)
    return evaluate_gates(gates, version, environment, runs, in_lower)


# --- the version a run in an environment uses -----------------------------------------------------

def version_for(conn: Connection, job: Any, environment: str, requested: int | None) -> int:
    """The version a run of ``job`` in ``environment`` uses: in dev the one asked for (default: the
    current one); in stage and prod the promoted one, and only that one."""
    if environment not in LOWER_ENVIRONMENT:
        return int(requested or job["current_version"])
    promoted = store.promoted_version(conn, job["id"], environment)
    if promoted is None:
        raise Conflict(f"job {job['name']} has no version promoted to {environment}; promote one first "
                       f"(lakehouse jobs promote {job['name']} --to {environment})", code="not_promoted",
                       details=[{"field": "environment", "message": f"nothing promoted to {environment}"}])
    if requested is not None and int(requested) != promoted:
        raise Conflict(f"v{requested} of {job['name']} is not the version promoted to {environment} "
                       f"(v{promoted}); run it in dev, or promote it", code="not_promoted",
                       details=[{"field": "version", "message": f"{environment} runs v{promoted}"}])
    return promoted


# --- gates ------------------------------------------------------------------------------------------

def get_gates(ctx: Context, principal: Principal, workspace: str) -> dict[str, Any]:
    ws_id = _workspace(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        configured = store.get_gates(conn, ws_id)
        gates = gates_of(conn, ws_id)
    return {env: {"environment": env, "lower": LOWER_ENVIRONMENT[env], **gates[env].model_dump(),
                  "configured": env in configured,
                  "updated_by": configured[env]["updated_by"] if env in configured else None,
                  "updated_at": configured[env]["updated_at"] if env in configured else None}
            for env in PROMOTED_ENVIRONMENTS}


def set_gates(ctx: Context, principal: Principal, workspace: str, environment: str, values: dict[str, Any]
              ) -> dict[str, Any]:
    """Change some gates of one environment (the others keep their value). Workspace admins only."""
    ws_id = _workspace(ctx, principal, workspace, Action.ADMIN, write=True)
    env = _target(environment, "environment")
    unknown = sorted(set(values) - set(GATE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown gate {unknown[0]!r}; gates are {', '.join(GATE_FIELDS)}", code="invalid_gates",
                           details=[{"field": u, "message": "unknown gate"} for u in unknown])
    now = ctx.clock()
    with ctx.db.write() as conn:
        current = gates_of(conn, ws_id)[env]
        try:
            gates = Gates.model_validate({**current.model_dump(), **values})
        except ValidationError as exc:
            details = [{"field": ".".join(str(p) for p in e["loc"]), "message": str(e["msg"])} for e in exc.errors()]
            raise InvalidInput(f"{details[0]['field']}: {details[0]['message']}", code="invalid_gates",
                               details=details) from None
        store.set_gates(conn, ws_id, env, gates.model_dump(), principal.name, now)
        audit.record(conn, now, principal, "promotion.gates", "workspace", workspace, ws_id,
                     {"environment": env, "before": current.model_dump(), "after": gates.model_dump()})
    changed: dict[str, Any] = get_gates(ctx, principal, workspace)[env]
    return changed


# --- promote, approve, reject --------------------------------------------------------------------

def render(row: Any, job: str, workspace: str) -> dict[str, Any]:
    return {"id": row["id"], "job": job, "workspace": workspace, "version": row["version"],
            "environment": row["environment"], "status": row["status"], "gates": row["gates"],
            "requested_by": row["requested_by"], "requested_at": row["requested_at"],
            "decided_by": row["decided_by"], "decided_at": row["decided_at"], "comment": row["comment"]}


def promote(ctx: Context, principal: Principal, workspace: str, job: str, to: str, version: int | None = None,
            comment: str | None = None) -> dict[str, Any]:
    """Ask for ``version`` (default: the current one) to reach ``to``. Every gate is evaluated; one
    that fails refuses the promotion (409 ``promotion_gate_failed`` with every gate in the details,
    audited). When the environment needs an approval the promotion waits (``pending``); otherwise the
    version is promoted at once."""
    ws_id = _workspace(ctx, principal, workspace, Action.JOB_PROMOTE, write=True)
    env = _target(to)
    now = ctx.clock()
    refusal: ServiceError | None = None
    with ctx.db.write() as conn:
        row = _job(conn, ws_id, job)
        number = int(version or row["current_version"])
        v = store.get_version(conn, row["id"], number)
        if v is None:
            raise NotFound(f"job {job!r} has no version {number}", code="version_not_found")
        if store.promoted_version(conn, row["id"], env) == number:
            raise Conflict(f"v{number} of {job} is already the version in {env}", code="already_promoted")
        gates = gates_of(conn, ws_id)[env]
        results = _evaluate(conn, row["id"], number, env, gates)
        failed = [g for g in results if not g["ok"]]
        details = {"version": number, "environment": env, "gates": results}
        if failed:
            audit.record(conn, now, principal, "job.promotion_refused", "job", job, ws_id, details)
            refusal = Conflict(f"cannot promote {job} v{number} to {env}: {failed[0]['reason']}",
                               code="promotion_gate_failed", details=results)
        else:
            earlier = store.pending_promotion(conn, row["id"], env, lock=True)
            if earlier is not None:
                store.decide_promotion(conn, earlier, PromotionStatus.SUPERSEDED, principal.name, now,
                                       f"replaced by a request for v{number}")
            status = PromotionStatus.PENDING if gates.require_approval else PromotionStatus.PROMOTED
            pid = store.insert_promotion(
                conn, job_id=row["id"], workspace_id=ws_id, version=number, environment=env, status=status,
                gates=results, requested_by=principal.name, requested_at=now, comment=comment,
                decided_by=None if gates.require_approval else principal.name,
                decided_at=None if gates.require_approval else now)
            audit.record(conn, now, principal, "job.promotion_requested" if gates.require_approval else "job.promote",
                         "job", job, ws_id, {**details, "promotion_id": pid})
            created = store.get_promotion(conn, pid)
    if refusal is not None:
        raise refusal
    return render(created, job, workspace)


def approve(ctx: Context, principal: Principal, workspace: str, job: str, environment: str,
            comment: str | None = None) -> dict[str, Any]:
    """Approve the promotion waiting for ``environment``: the approver needs the role the gates name
    (and may not be the version's author or the requester when the workspace says so); the run gates
    are evaluated again, since runs may have finished meanwhile."""
    return _decide(ctx, principal, workspace, job, environment, True, comment)


def reject(ctx: Context, principal: Principal, workspace: str, job: str, environment: str,
           comment: str | None = None) -> dict[str, Any]:
    """Reject the promotion waiting for ``environment`` (its requester may withdraw it)."""
    return _decide(ctx, principal, workspace, job, environment, False, comment)


def _decide(ctx: Context, principal: Principal, workspace: str, job: str, environment: str, approve_: bool,
            comment: str | None) -> dict[str, Any]:
    ws_id = _workspace(ctx, principal, workspace, Action.JOB_APPROVE, write=True)
    env = _target(environment, "environment")
    now = ctx.clock()
    refusal: ServiceError | None = None
    with ctx.db.write() as conn:
        row = _job(conn, ws_id, job)
        pending = store.pending_promotion(conn, row["id"], env, lock=True)
        if pending is None:
            raise Conflict(f"no promotion of {job} to {env} waits for a decision", code="no_pending_promotion")
        gates = gates_of(conn, ws_id)[env]
        v = store.get_version(conn, row["id"], pending["version"])
        author = v["created_by"] if v is not None else ""
        details: dict[str, Any] = {"version": pending["version"], "environment": env, "promotion_id": pending["id"],
                                   "requested_by": pending["requested_by"], "author": author}
        if approve_:
            why = approval_refusal(gates, principal.name, principal.role_in(ws_id), author, pending["requested_by"])
        elif principal.name == pending["requested_by"]:
            why = None  # withdrawing one's own request
        else:
            why = approval_refusal(gates.model_copy(update={"approver_not_author": False}), principal.name,
                                   principal.role_in(ws_id), author, pending["requested_by"])
        if why:
            audit.record(conn, now, principal, "job.approval_refused", "job", job, ws_id, {**details, "reason": why})
            refusal = Forbidden(f"cannot {'approve' if approve_ else 'reject'} this promotion: {why}",
                                code="approver_refused")
        elif not approve_:
            store.decide_promotion(conn, pending, PromotionStatus.REJECTED, principal.name, now, comment)
            audit.record(conn, now, principal, "job.promotion_rejected", "job", job, ws_id,
                         {**details, "comment": comment})
        else:
            results = _evaluate(conn, row["id"], pending["version"], env, gates)
            failed = [g for g in results if not g["ok"]]
            if failed:
                audit.record(conn, now, principal, "job.promotion_refused", "job", job, ws_id,
                             {**details, "gates": results})
                refusal = Conflict(f"cannot promote {job} v{pending['version']} to {env}: {failed[0]['reason']}",
                                   code="promotion_gate_failed", details=results)
            else:
                store.decide_promotion(conn, pending, PromotionStatus.PROMOTED, principal.name, now, comment, results)
                audit.record(conn, now, principal, "job.promote", "job", job, ws_id,
                             {**details, "approved_by": principal.name, "gates": results})
        decided = store.get_promotion(conn, pending["id"])
    if refusal is not None:
        raise refusal
    return render(decided, job, workspace)


# --- what the job page shows ------------------------------------------------------------------------

def state(ctx: Context, principal: Principal, workspace: str, job: str) -> dict[str, Any]:
    """Per environment: the version there, the promotion waiting, the gates and how the current
    version fares against them; and the history of promotions."""
    ws_id = _workspace(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        row = _job(conn, ws_id, job)
        gates = gates_of(conn, ws_id)
        promoted = store.promoted_versions(conn, [row["id"]])
        current = int(row["current_version"])
        envs = []
        for env in PROMOTED_ENVIRONMENTS:
            there = promoted.get((row["id"], env))
            pending = store.pending_promotion(conn, row["id"], env)
            envs.append({
                "environment": env, "lower": LOWER_ENVIRONMENT[env], "gates": gates[env].model_dump(),
                "promoted": render(there, job, workspace) if there else None,
                "pending": render(pending, job, workspace) if pending else None,
                "candidate": current,
                "checks": [] if there and there["version"] == current
                else _evaluate(conn, row["id"], current, env, gates[env]),
            })
        history = [render(r, job, workspace) for r in store.list_promotions(conn, row["id"], 50)]
    return {"job": job, "workspace": workspace, "current_version": current,
            "environments": envs, "history": history}


def promoted_map(conn: Connection, job_ids: list[int]) -> dict[int, dict[str, int]]:
    """{job id: {environment: version}} for lists."""
    out: dict[int, dict[str, int]] = {}
    for (job_id, env), r in store.promoted_versions(conn, job_ids).items():
        out.setdefault(job_id, {})[env] = int(r["version"])
    return out
