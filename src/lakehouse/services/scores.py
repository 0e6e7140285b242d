"""Run scores: the signals of a finished run measured against its pipeline's history, scored with
the workspace's weights (domain/scores.py), stored in ``run_scores`` by the operations pass (and on
demand), listed and sorted by score, and watched by ``score_below`` rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lakehouse.domain.alerts import AlertKind, median
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.scores import DEFAULT_WEIGHTS, InvalidWeights, RunFacts, clean_weights, compute_run_score
from lakehouse.domain.states import RUN_FINISHED, RunStatus
from lakehouse.services import alert_fire, audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import alerts as alert_store
from lakehouse.store import ops_reads, queue
from lakehouse.store.types_public import Connection, RowMapping

HISTORY = 20  # previous successful runs the baselines and the volume history use


def _rows_published(phases: list[RowMapping]) -> float | None:
    """Rows the run committed: the ``rows`` of its publish outputs (None when it published nothing)."""
    total, seen = 0.0, False
    for p in phases:
        outputs = (p["output_manifest"] or {}).get("outputs") if isinstance(p["output_manifest"], dict) else None
        if p["type"] != "publish" or not isinstance(outputs, dict):
            continue
        for entry in outputs.values():
            if isinstance(entry, dict) and isinstance(entry.get("rows"), int | float):
                total += float(entry["rows"])
                seen = True
    return total if seen else None


def _runtime(phases: list[RowMapping]) -> float | None:
    spans = [(p["finished_at"] - p["started_at"]).total_seconds() for p in phases
             if p["started_at"] is not None and p["finished_at"] is not None]
    return sum(spans) if spans else None


def facts(conn: Connection, run: RowMapping) -> RunFacts:
    """Measure a finished run and its pipeline's previous successful runs."""
    history = ops_reads.previous_successes(conn, run, HISTORY)
    phases = ops_reads.phases_of(conn, [run["id"], *(h["id"] for h in history)])
    by_run: dict[str, list[RowMapping]] = {}
    for p in phases:
        by_run.setdefault(p["run_id"], []).append(p)
    mine = by_run.get(run["id"], [])
    durations = [d for d in (alert_fire.run_seconds(h) for h in history) if d is not None]
    runtimes = [r for r in (_runtime(by_run.get(h["id"], [])) for h in history) if r is not None]
    volumes = [v for v in (_rows_published(by_run.get(h["id"], [])) for h in history) if v is not None]
    dq = ops_reads.dq_results(conn, run["id"])
    fresh = ops_reads.freshness_of_run(conn, run["id"])
    lag = None
    if fresh and run["finished_at"] is not None:
        lag = max(0.0, max((run["finished_at"] - f["newest_change_at"]).total_seconds() for f in fresh))
    return RunFacts(
        status=run["status"], duration_s=alert_fire.run_seconds(run),
        baseline_duration_s=median(durations) if len(durations) >= 3 else None,
        extra_attempts=sum(max(0, p["attempt"] - 1) for p in mine),
        dq_failed=sum(1 for r in dq if r.get("passed") is False and r.get("severity") == "error"),
        dq_warnings=sum(1 for r in dq if r.get("passed") is False and r.get("severity") != "error"),
        rows_published=_rows_published(mine), rows_history=tuple(volumes), freshness_lag_s=lag,
        runtime_s=_runtime(mine), baseline_runtime_s=median(runtimes) if len(runtimes) >= 3 else None)


def _weights(conn: Connection, workspace_id: int) -> dict[str, float]:
    stored = ops_reads.weights_of(conn, workspace_id)
    try:
        return clean_weights(stored)
    except InvalidWeights:  # pragma: no cover - stored weights were checked when set
        return dict(DEFAULT_WEIGHTS)


def score_run(conn: Connection, run: RowMapping, now: datetime,
              per_workspace: dict[int, tuple[dict[str, float], list[RowMapping]]] | None = None,
              ) -> tuple[float, list[dict[str, Any]]]:
    """Compute and store one finished run's score; fire or clear the workspace's score rules.
    ``per_workspace`` keeps each workspace's weights and score rules for one pass over many runs."""
    ws = int(run["workspace_id"])
    cached = None if per_workspace is None else per_workspace.get(ws)
    if cached is None:
        cached = (_weights(conn, ws), alert_store.enabled_rules(conn, [AlertKind.SCORE_BELOW.value], ws))
        if per_workspace is not None:
            per_workspace[ws] = cached
    weights, rules = cached
    score, breakdown = compute_run_score(facts(conn, run), weights)
    ops_reads.put_score(conn, run["id"], run["workspace_id"], score, breakdown, now)
    job = None
    for rule in rules:
        if rule["job"] is not None and job is None:
            job = ops_reads.job_of_run(conn, run["id"])
        if not alert_fire.matches(rule, run, job):
            continue
        subject = alert_fire.subject_of(run, job)
        threshold = float(rule["params"]["threshold"])
        if score < threshold:
            worst = sorted(breakdown, key=lambda r: -r["points_lost"])[:3]
            alert_fire.fire(conn, rule, subject, f"run of {subject} scored {score:g} (below {threshold:g})",
                            {"run_id": run["id"], "score": score,
                             "worst": [{"signal": w["signal"], "points_lost": w["points_lost"]} for w in worst]},
                            now, run["id"])
        elif run["status"] == RunStatus.SUCCEEDED.value:
            alert_fire.clear(conn, rule, now, group_key=subject)
    return score, breakdown


def score_pending(ctx: Context, limit: int = 200) -> int:
    """Score finished runs that have no score yet (the operations pass); returns how many."""
    with ctx.db.write() as conn:
        now = ctx.clock()
        rows = ops_reads.finished_unscored(conn, limit)
        per_workspace: dict[int, tuple[dict[str, float], list[RowMapping]]] = {}
        for run in rows:
            score_run(conn, run, now, per_workspace)
    return len(rows)


# --- reading and weights --------------------------------------------------------------------------

def run_score(ctx: Context, principal: Principal, run_id: str) -> dict[str, Any]:
    """A run's score with its breakdown (computed now if the pass has not reached it yet)."""
    principal.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        run = queue.get_run(conn, run_id)
        if run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        if RunStatus(run["status"]) not in RUN_FINISHED:
            raise Conflict(f"run {run_id} is {run['status']}: scores are for finished runs", code="run_not_finished")
        stored = ops_reads.score_of(conn, run_id)
    if stored is None:
        with ctx.db.write() as conn:
            score, breakdown = score_run(conn, run, ctx.clock())
            computed_at = ctx.clock()
    else:
        score, breakdown, computed_at = stored["score"], stored["signals"], stored["computed_at"]
    return {"run_id": run_id, "score": score, "signals": breakdown, "computed_at": computed_at}


def list_scores(ctx: Context, principal: Principal, *, environment: str | None = None, spec_slug: str | None = None,
                below: float | None = None, order: str = "created", limit: int = 50) -> list[dict[str, Any]]:
    """Scored runs; ``order`` is created (newest first), score (worst first) or -score (best first)."""
    principal.require(Action.RUN_READ)
    if order not in ("created", "score", "-score"):
        raise InvalidInput("order is created, score or -score", code="invalid_order")
    with ctx.db.read() as conn:
        rows = ops_reads.scored_runs(conn, principal.workspace_ids, environment=environment, spec_slug=spec_slug,
                                     below=below, order=order, limit=max(1, min(limit, 500)))
    return [{"run_id": r["id"], "workspace": r["workspace"], "status": r["status"], "spec_slug": r["spec_slug"],
             "environment": r["environment"], "created_at": r["created_at"], "finished_at": r["finished_at"],
             "score": r["score"]} for r in rows]


def get_weights(ctx: Context, principal: Principal, workspace: str) -> dict[str, Any]:
    principal.require(Action.RUN_READ)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    with ctx.db.read() as conn:
        return {"workspace": workspace, "weights": _weights(conn, ws_id), "defaults": dict(DEFAULT_WEIGHTS)}


def set_weights(ctx: Context, principal: Principal, workspace: str, weights: dict[str, Any],
                address: str | None = None) -> dict[str, Any]:
    """Set some or all weights of a workspace (the rest keep their defaults); later scores use them."""
    principal.require(Action.ALERT_MANAGE)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(Action.ALERT_MANAGE, ws_id)
    try:
        clean = clean_weights(weights)
    except InvalidWeights as exc:
        raise InvalidInput(str(exc), code="invalid_weights") from None
    now = ctx.clock()
    with ctx.db.write() as conn:
        ops_reads.put_weights(conn, ws_id, clean, principal.name, now)
        audit.record(conn, now, principal, "score.weights", "workspace", workspace, ws_id, clean, address)
    return get_weights(ctx, principal, workspace)
