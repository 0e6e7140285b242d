"""Reads of the operations layer: a run's facts and its pipeline's history (scores, baseline rules),
the queue as the timed rules and /metrics see it, executors, run scores, signal weights and table
freshness. Every duration is computed by the caller from timestamps (the same on both databases).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from lakehouse.domain.states import PhaseStatus, RunStatus
from lakehouse.store import dialect
from lakehouse.store.scope import visible
from lakehouse.store.tables import (
    executors,
    job_runs,
    jobs,
    phase_attempts,
    phases,
    run_events,
    run_scores,
    runs,
    signal_weights,
    table_freshness,
)
from lakehouse.store.tables import workspaces as ws_table

# --- one run and its history ----------------------------------------------------------------------


def job_of_run(conn: Connection, run_id: str) -> str | None:
    stmt = select(jobs.c.name).join(job_runs, job_runs.c.job_id == jobs.c.id).where(job_runs.c.run_id == run_id)
    return conn.execute(stmt).scalar()


def dq_results(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """The ``result`` of each DQ_RESULT event of a run."""
    rows: Any = conn.execute(select(run_events.c.payload).where(run_events.c.run_id == run_id,
                                                           run_events.c.type == "DQ_RESULT")).scalars()
    return [dict(p.get("result") or {}) for p in rows if isinstance(p, dict)]


def previous_successes(conn: Connection, run: RowMapping, limit: int) -> list[RowMapping]:
    """The pipeline's latest successful runs created before ``run`` (same workspace and environment)."""
    stmt = (select(runs.c.id, runs.c.started_at, runs.c.finished_at, runs.c.created_at)
            .where(runs.c.workspace_id == run["workspace_id"], runs.c.environment == run["environment"],
                   runs.c.spec_slug == run["spec_slug"], runs.c.status == RunStatus.SUCCEEDED.value,
                   runs.c.created_at < run["created_at"], runs.c.id != run["id"])
            .order_by(runs.c.created_at.desc()).limit(limit))
    return list(conn.execute(stmt).mappings())


def later_runs(conn: Connection, run: RowMapping, limit: int = 1) -> list[RowMapping]:
    stmt = (select(runs.c.id).where(runs.c.workspace_id == run["workspace_id"],
                                    runs.c.environment == run["environment"], runs.c.spec_slug == run["spec_slug"],
                                    runs.c.created_at > run["created_at"])
            .order_by(runs.c.created_at).limit(limit))
    return list(conn.execute(stmt).mappings())


def phases_of(conn: Connection, run_ids: Collection[str]) -> list[RowMapping]:
    if not run_ids:
        return []
    stmt = select(phases.c.run_id, phases.c.name, phases.c.type, phases.c.status, phases.c.attempt,
                  phases.c.max_attempts, phases.c.started_at, phases.c.finished_at,
                  phases.c.output_manifest).where(phases.c.run_id.in_(sorted(run_ids)))
    return list(conn.execute(stmt).mappings())


def freshness_of_run(conn: Connection, run_id: str) -> list[RowMapping]:
    return list(conn.execute(select(table_freshness).where(table_freshness.c.run_id == run_id)).mappings())


def finished_unscored(conn: Connection, limit: int) -> list[RowMapping]:
    """Finished runs without a score, oldest first (the maintenance pass scores them)."""
    stmt = (select(runs).outerjoin(run_scores, run_scores.c.run_id == runs.c.id)
            .where(runs.c.status.in_([s.value for s in (RunStatus.SUCCEEDED, RunStatus.FAILED,
                                                        RunStatus.CANCELLED)]),
                   run_scores.c.run_id.is_(None))
            .order_by(runs.c.finished_at, runs.c.id).limit(limit))
    return list(conn.execute(stmt).mappings())


# --- scores and weights ---------------------------------------------------------------------------


def weights_of(conn: Connection, workspace_id: int) -> dict[str, Any] | None:
    return conn.execute(select(signal_weights.c.weights).where(
        signal_weights.c.workspace_id == workspace_id)).scalar()


def put_weights(conn: Connection, workspace_id: int, weights: dict[str, float], by: str, now: datetime) -> None:
    values = {"weights": weights, "updated_by": by, "updated_at": now}
    if conn.execute(update(signal_weights).where(signal_weights.c.workspace_id == workspace_id)
                    .values(**values)).rowcount == 0:
        dialect.insert_ignore(conn, signal_weights, [{"workspace_id": workspace_id, **values}], "workspace_id")


def put_score(conn: Connection, run_id: str, workspace_id: int, score: float, signals: list[dict[str, Any]],
              now: datetime) -> None:
    values = {"workspace_id": workspace_id, "score": score, "signals": signals, "computed_at": now}
    if conn.execute(update(run_scores).where(run_scores.c.run_id == run_id).values(**values)).rowcount == 0:
        dialect.insert_ignore(conn, run_scores, [{"run_id": run_id, **values}], "run_id")


def score_of(conn: Connection, run_id: str) -> RowMapping | None:
    return conn.execute(select(run_scores).where(run_scores.c.run_id == run_id)).mappings().first()


def scored_runs(conn: Connection, workspace_ids: Collection[int] | None, *, environment: str | None,
                spec_slug: str | None, below: float | None, order: str, limit: int) -> list[RowMapping]:
    stmt = (select(runs.c.id, runs.c.status, runs.c.spec_slug, runs.c.environment, runs.c.created_at,
                   runs.c.finished_at, ws_table.c.slug.label("workspace"), run_scores.c.score,
                   run_scores.c.computed_at)
            .join(run_scores, run_scores.c.run_id == runs.c.id)
            .join(ws_table, ws_table.c.id == runs.c.workspace_id))
    stmt = visible(stmt, runs.c.workspace_id, workspace_ids)
    if environment:
        stmt = stmt.where(runs.c.environment == environment)
    if spec_slug:
        stmt = stmt.where(runs.c.spec_slug == spec_slug)
    if below is not None:
        stmt = stmt.where(run_scores.c.score < below)
    key = {"score": (run_scores.c.score.asc(), runs.c.created_at.desc()),
           "-score": (run_scores.c.score.desc(), runs.c.created_at.desc())}.get(
        order, (runs.c.created_at.desc(), runs.c.id.desc()))
    return list(conn.execute(stmt.order_by(*key).limit(limit)).mappings())


# --- freshness ------------------------------------------------------------------------------------


def freshness_get(conn: Connection, workspace_id: int, environment: str, table: str) -> RowMapping | None:
    t = table_freshness
    return conn.execute(select(t).where(t.c.workspace_id == workspace_id, t.c.environment == environment,
                                        t.c.table_name == table)).mappings().first()


def freshness_put(conn: Connection, workspace_id: int, environment: str, table: str, *, newest_change_at: datetime,
                  run_id: str, now: datetime) -> None:
    t = table_freshness
    values = {"newest_change_at": newest_change_at, "run_id": run_id, "published_at": now}
    if conn.execute(update(t).where(t.c.workspace_id == workspace_id, t.c.environment == environment,
                                    t.c.table_name == table).values(**values)).rowcount == 0:
        dialect.insert_ignore(conn, t, [{"workspace_id": workspace_id, "environment": environment,
                                         "table_name": table, **values}],
                              "workspace_id", "environment", "table_name")


def freshness_rows(conn: Connection, workspace_ids: Collection[int] | None, workspace_id: int | None = None,
                   environment: str | None = None) -> list[RowMapping]:
    t = table_freshness
    stmt = select(t, ws_table.c.slug.label("workspace")).join(ws_table, ws_table.c.id == t.c.workspace_id)
    stmt = visible(stmt, t.c.workspace_id, workspace_ids)
    if workspace_id is not None:
        stmt = stmt.where(t.c.workspace_id == workspace_id)
    if environment:
        stmt = stmt.where(t.c.environment == environment)
    return list(conn.execute(stmt.order_by(ws_table.c.slug, t.c.environment, t.c.table_name)).mappings())


# --- the queue and executors ----------------------------------------------------------------------


def queued_by(conn: Connection, now: datetime, workspace_id: int | None = None,
              environment: str | None = None) -> list[RowMapping]:
    """Runnable queued phases (``available_at`` passed) per capability: how many, and the oldest
    ``available_at``."""
    stmt = (select(phases.c.capability, func.count().label("n"), func.min(phases.c.available_at).label("oldest"))
            .where(phases.c.status == PhaseStatus.QUEUED.value, phases.c.available_at <= now)
            .group_by(phases.c.capability))
    if workspace_id is not None or environment:
        stmt = stmt.join(runs, runs.c.id == phases.c.run_id)
        if workspace_id is not None:
            stmt = stmt.where(runs.c.workspace_id == workspace_id)
        if environment:
            stmt = stmt.where(runs.c.environment == environment)
    return list(conn.execute(stmt).mappings())


def executor_rows(conn: Connection) -> list[RowMapping]:
    return list(conn.execute(select(executors.c.id, executors.c.last_seen_at, executors.c.capabilities,
                                    executors.c.info)).mappings())


# --- /metrics -------------------------------------------------------------------------------------


def phase_outcomes(conn: Connection) -> list[RowMapping]:
    finished = [s.value for s in (PhaseStatus.SUCCEEDED, PhaseStatus.FAILED, PhaseStatus.CANCELLED,
                                  PhaseStatus.SKIPPED)]
    stmt = (select(phases.c.type, phases.c.status, func.count().label("n"))
            .where(phases.c.status.in_(finished)).group_by(phases.c.type, phases.c.status))
    return list(conn.execute(stmt).mappings())


def lease_expirations(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(run_events)
                            .where(run_events.c.type == "LEASE_EXPIRED")).scalar_one())


def retries(conn: Connection) -> int:
    """Attempts beyond the first, over every phase."""
    return int(conn.execute(select(func.count()).select_from(phase_attempts)
                            .where(phase_attempts.c.attempt > 1)).scalar_one())


def recent_phases(conn: Connection, since: datetime, limit: int) -> list[RowMapping]:
    """Phases started since ``since`` (newest first): their queue and run times."""
    stmt = (select(phases.c.type, phases.c.capability, phases.c.available_at, phases.c.claimed_at,
                   phases.c.started_at, phases.c.finished_at, runs.c.created_at.label("run_created_at"))
            .join(runs, runs.c.id == phases.c.run_id)
            .where(phases.c.started_at.is_not(None), phases.c.started_at >= since)
            .order_by(phases.c.started_at.desc()).limit(limit))
    return list(conn.execute(stmt).mappings())


def job_exists(conn: Connection, workspace_id: int, name: str) -> bool:
    return conn.execute(select(jobs.c.id).where(jobs.c.workspace_id == workspace_id, jobs.c.name == name)
                        ).first() is not None


def ping(conn: Connection) -> None:
    conn.execute(select(1)).scalar()
