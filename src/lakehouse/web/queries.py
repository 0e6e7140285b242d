"""Read-only queries behind the Overview and Runs pages, scoped to the viewer's workspaces.

Every statement filters on ``principal.workspace_ids`` first (the row-level-security rule) and is
shaped to hit an index: runs by (workspace_id, created_at, id), phases by run, events by (run_id, seq).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, literal_column, select, text, tuple_

from lakehouse.domain.roles import Action
from lakehouse.domain.states import PHASE_FINISHED, PhaseStatus
from lakehouse.services.auth import Principal
from lakehouse.services.context import Context
from lakehouse.store.tables import (
    artifacts,
    audit_log,
    executors,
    lineage_edges,
    phases,
    run_events,
    runs,
    workspaces,
)

DAY = timedelta(hours=24)
SAMPLE_RUNS = 1000  # success rate by phase and p50/p95 use the newest runs of the 24 h window


def _visible(stmt: Select[Any], principal: Principal) -> Select[Any]:
    if principal.workspace_ids is not None:
        stmt = stmt.where(runs.c.workspace_id.in_(sorted(principal.workspace_ids)))
    return stmt


@dataclass(frozen=True)
class RunFilter:
    status: str | None = None
    spec_slug: str | None = None
    environment: str | None = None
    workspace: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(created_at: datetime, run_id: str) -> str:
    return f"{created_at.isoformat()}~{run_id}"


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor or "~" not in cursor:
        return None
    ts, _, run_id = cursor.partition("~")
    ts = ts.replace(" ", "+")  # a '+' of the offset that was not URL-encoded
    try:
        return datetime.fromisoformat(ts), run_id
    except ValueError:
        return None


def list_runs(ctx: Context, principal: Principal, f: RunFilter, before: str | None = None,
              limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated by (created_at, id); returns (rows, cursor of the next page)."""
    stmt = _visible(select(runs.c.id, runs.c.status, runs.c.spec_slug, runs.c.git_sha, runs.c.environment,
                           runs.c.created_at, runs.c.started_at, runs.c.finished_at, runs.c.error,
                           runs.c.created_by, runs.c.workspace_id, runs.c.labels), principal)
    if f.status:
        stmt = stmt.where(runs.c.status == f.status)
    if f.spec_slug:
        stmt = stmt.where(runs.c.spec_slug == f.spec_slug)
    if f.environment:
        stmt = stmt.where(runs.c.environment == f.environment)
    if f.since:
        stmt = stmt.where(runs.c.created_at >= f.since)
    if f.until:
        stmt = stmt.where(runs.c.created_at < f.until)
    with ctx.db.read() as conn:
        if f.workspace:
            ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == f.workspace)).scalar()
            stmt = stmt.where(runs.c.workspace_id == (ws_id if ws_id is not None else -1))
        anchor = decode_cursor(before)
        if anchor:
            # a row-value comparison is one index range on both databases (an OR of two is not)
            stmt = stmt.where(tuple_(runs.c.created_at, runs.c.id) < tuple_(bindparam("anchor_ts", anchor[0],
                                                                                       type_=runs.c.created_at.type),
                                                                             anchor[1]))
        rows = [dict(r) for r in conn.execute(
            stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)).mappings()]
        slugs = _workspace_slugs(conn)
        more = len(rows) > limit
        rows = rows[:limit]
        _attach_phase_strips(conn, rows)
    for r in rows:
        r["workspace"] = slugs.get(r["workspace_id"], "?")
    nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return rows, nxt


def _workspace_slugs(conn: Connection) -> dict[int, str]:
    pairs: list[Any] = list(conn.execute(select(workspaces.c.id, workspaces.c.slug)))
    return {int(i): str(s) for i, s in pairs}


def _attach_phase_strips(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Each run's phases as (name, status) for the small strip in the list (Airflow's grid, one row)."""
    if not rows:
        return
    strips: dict[str, list[tuple[str, str]]] = {r["id"]: [] for r in rows}
    q = (select(phases.c.run_id, phases.c.name, phases.c.status, phases.c.attempt)
         .where(phases.c.run_id.in_(list(strips))).order_by(phases.c.run_id, phases.c.idx))
    found: list[Any] = list(conn.execute(q))
    for run_id, name, status, attempt in found:
        shown = "retrying" if status == PhaseStatus.QUEUED.value and attempt > 0 else status
        strips[run_id].append((name, shown))
    for r in rows:
        r["phases"] = strips[r["id"]]


def spec_slugs(ctx: Context, principal: Principal, limit: int = 200) -> list[str]:
    """Distinct pipelines of the visible runs without scanning them: a loose index scan over
    ix_runs_spec_created, one index probe per pipeline (a recursive CTE; SQLite and Postgres)."""
    ws = ""
    params: dict[str, Any] = {"limit": limit}
    if principal.workspace_ids is not None:
        ids = sorted(principal.workspace_ids) or [-1]
        ws = " AND workspace_id IN (" + ", ".join(f":w{i}" for i in range(len(ids))) + ")"
        params.update({f"w{i}": v for i, v in enumerate(ids)})
    sql = text(f"""
        WITH RECURSIVE slugs(s, n) AS (
            SELECT (SELECT min(spec_slug) FROM runs WHERE 1 = 1{ws}), 1
            UNION ALL
            SELECT (SELECT min(spec_slug) FROM runs WHERE spec_slug > slugs.s{ws}), n + 1
            FROM slugs WHERE slugs.s IS NOT NULL AND n < :limit
        )
        SELECT s FROM slugs WHERE s IS NOT NULL""")
    with ctx.db.read() as conn:
        found: Any = conn.execute(sql, params).scalars().all()
    return [str(slug) for slug in found]


def overview(ctx: Context, principal: Principal) -> dict[str, Any]:
    now = ctx.clock()
    since = now - DAY
    with ctx.db.read() as conn:
        queued: int = conn.execute(_visible(
            select(func.count()).select_from(phases.join(runs, runs.c.id == phases.c.run_id))
            .where(phases.c.status == PhaseStatus.QUEUED.value, phases.c.available_at <= now), principal)).scalar_one()
        backoff: int = conn.execute(_visible(
            select(func.count()).select_from(phases.join(runs, runs.c.id == phases.c.run_id))
            .where(phases.c.status == PhaseStatus.QUEUED.value, phases.c.available_at > now), principal)).scalar_one()
        recent = _visible(select(runs.c.id).where(runs.c.created_at >= since), principal) \
            .order_by(runs.c.created_at.desc()).limit(SAMPLE_RUNS).subquery()
        phase_rows: Any = conn.execute(
            select(phases.c.name, phases.c.status, func.count())
            .select_from(recent.join(phases, phases.c.run_id == recent.c.id))
            .where(phases.c.status.in_([s.value for s in PHASE_FINISHED]))
            .group_by(phases.c.name, phases.c.status)).all()
        lease_timeouts: int = conn.execute(_visible(
            select(func.count()).select_from(run_events.join(runs, runs.c.id == run_events.c.run_id))
            .where(run_events.c.type == "LEASE_EXPIRED", run_events.c.ts >= since), principal)).scalar_one()
        durations = [(r[1] - r[0]).total_seconds() for r in conn.execute(_visible(
            select(runs.c.started_at, runs.c.finished_at)
            .where(runs.c.created_at >= since, runs.c.status == "succeeded", runs.c.started_at.is_not(None)), principal)
            .order_by(runs.c.created_at.desc()).limit(SAMPLE_RUNS))]
        hourly = _hourly(conn, principal, since)
        by_status: dict[str, int] = {str(k): sum(v) for k, v in hourly.items() if k != "x"}
        failures = [dict(r) for r in conn.execute(_visible(
            select(runs.c.id, runs.c.spec_slug, runs.c.environment, runs.c.finished_at, runs.c.error)
            .where(runs.c.status == "failed", runs.c.created_at >= since), principal)
            .order_by(runs.c.created_at.desc()).limit(5)).mappings()]
        running = [dict(r) for r in conn.execute(_visible(
            select(runs.c.id, runs.c.spec_slug, runs.c.environment, runs.c.started_at, runs.c.created_at)
            .where(runs.c.status.in_(["running", "queued"])), principal)
            .order_by(runs.c.created_at.desc()).limit(8)).mappings()]
        ex: list[Any] = list(conn.execute(select(executors.c.last_seen_at)).scalars().all())
    # the rate is succeeded / (succeeded + failed): a phase skipped because an earlier one failed, or
    # cancelled with its run, never ran and did not fail; they are counted apart
    success: dict[str, dict[str, int]] = {}
    for name, status, n in phase_rows:
        d = success.setdefault(name, {"succeeded": 0, "failed": 0, "total": 0, "skipped": 0, "cancelled": 0})
        if status in (PhaseStatus.SUCCEEDED.value, PhaseStatus.FAILED.value):
            d["total"] += n
            d[status] += n
        elif status in (PhaseStatus.SKIPPED.value, PhaseStatus.CANCELLED.value):
            d[status] += n
    stale_after = ctx.settings.executor_stale_s
    online = sum(1 for t in ex if (now - t).total_seconds() <= stale_after)
    durations.sort()
    return {
        "by_status": by_status, "queued": queued, "backoff": backoff, "lease_timeouts": lease_timeouts,
        "executors_online": online, "executors_total": len(ex),
        "success_by_phase": sorted(({"phase": k, **v, "rate": v["succeeded"] / v["total"] if v["total"] else None}
                                    for k, v in success.items()),
                                   key=lambda d: (d["rate"] is None, d["rate"] or 0.0, d["phase"])),
        "p50": _pct(durations, 0.5), "p95": _pct(durations, 0.95), "hourly": hourly,
        "failures": failures, "running": running,
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def _hourly(conn: Connection, principal: Principal, since: datetime) -> dict[str, Any]:
    """Runs per hour by status over 24 h, as uPlot series: {x: [epoch…], status: [counts…]}."""
    if conn.dialect.name == "postgresql":
        bucket = func.date_trunc(literal_column("'hour'"), runs.c.created_at)
    else:
        bucket = func.strftime("%Y-%m-%dT%H:00:00", runs.c.created_at)
    rows: Any = conn.execute(_visible(select(bucket.label("h"), runs.c.status, func.count())
                                 .where(runs.c.created_at >= since), principal).group_by("h", runs.c.status)).all()
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(25)]
    index = {h.strftime("%Y-%m-%dT%H"): i for i, h in enumerate(hours)}
    series: dict[str, list[int]] = {s: [0] * len(hours) for s in ("succeeded", "failed", "running", "queued",
                                                                  "cancelled")}
    for h, status, n in rows:
        key = (h if isinstance(h, str) else h.strftime("%Y-%m-%dT%H:%M:%S"))[:13]
        if key in index and status in series:
            series[status][index[key]] += int(n)
    return {"x": [int(h.timestamp()) for h in hours], **series}


def run_lineage(ctx: Context, run_id: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [dict(r) for r in conn.execute(
            select(lineage_edges.c.source, lineage_edges.c.target, lineage_edges.c.phase)
            .where(lineage_edges.c.run_id == run_id).order_by(lineage_edges.c.id)).mappings()]


def last_success_by_spec(ctx: Context, principal: Principal) -> dict[str, dict[str, Any]]:
    with ctx.db.read() as conn:
        rows: Any = conn.execute(_visible(
            select(runs.c.spec_slug, runs.c.status, func.max(runs.c.created_at)), principal)
            .group_by(runs.c.spec_slug, runs.c.status)).all()
    out: dict[str, dict[str, Any]] = {}
    for slug, status, ts in rows:
        out.setdefault(slug, {})[status] = ts
    return out


def artifact_counts(ctx: Context, run_id: str) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).where(artifacts.c.run_id == run_id)).scalar_one())


def executor_leases(ctx: Context) -> dict[str, dict[str, Any]]:
    """Current leases by executor id: the phase, its run and when the lease expires."""
    with ctx.db.read() as conn:
        rows = conn.execute(select(phases.c.executor_id, phases.c.run_id, phases.c.name, phases.c.lease_expires_at,
                                   phases.c.attempt, runs.c.workspace_id)
                            .join(runs, runs.c.id == phases.c.run_id)
                            .where(phases.c.status.in_(["claimed", "running"]))).mappings().all()
    return {r["executor_id"]: dict(r) for r in rows}


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_id: str | None = None
    since: datetime | None = None


def audit_entries(ctx: Context, principal: Principal, f: AuditFilter, before: int | None = None,
                  limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Audit entries, newest first, keyset-paginated by id (admins only)."""
    principal.require(Action.AUDIT_VIEW)
    stmt = select(audit_log)
    if f.actor:
        stmt = stmt.where(audit_log.c.actor == f.actor)
    if f.action:
        stmt = stmt.where(audit_log.c.action.startswith(f.action, autoescape=True))
    if f.object_id:
        stmt = stmt.where(audit_log.c.object_id == f.object_id)
    if f.since:
        stmt = stmt.where(audit_log.c.ts >= f.since)
    if before is not None:
        stmt = stmt.where(audit_log.c.id < before)
    with ctx.db.read() as conn:
        rows = [dict(r) for r in conn.execute(stmt.order_by(audit_log.c.id.desc()).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def audit_verify(ctx: Context, principal: Principal) -> tuple[bool, int | None]:
    from lakehouse.services import audit

    result = audit.verify_chain(ctx, principal)
    return result["ok"], result["first_bad"]


def visible_workspaces(ctx: Context, principal: Principal) -> list[str]:
    stmt = select(workspaces.c.slug).order_by(workspaces.c.slug)
    if principal.workspace_ids is not None:
        stmt = stmt.where(workspaces.c.id.in_(sorted(principal.workspace_ids)))
    with ctx.db.read() as conn:
        return list(conn.execute(stmt).scalars())
