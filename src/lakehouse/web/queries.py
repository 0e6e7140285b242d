"""Read-only queries behind the Overview, Runs, Executors and Audit pages, scoped to the viewer's
workspaces. The statements are in ``store/web_reads.py`` (the runs listing is the store's one keyset
listing, ``store/run_reads.py``); this module shapes their rows for the templates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import PHASE_FINISHED, PhaseStatus, RunStatus, shown_phase_status
from lakehouse.services.context import Context
from lakehouse.store import run_reads, web_reads
from lakehouse.store import workspaces as workspace_store

DAY = timedelta(hours=24)
SAMPLE_RUNS = 1000  # success rate by phase and p50/p95 use the newest runs of the 24 h window


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
    ids = principal.workspace_ids
    with ctx.db.read() as conn:
        ws_id = None
        if f.workspace:
            ws_id = workspace_store.id_of(conn, f.workspace)
            if ws_id is None:  # an unknown workspace has no runs
                return [], None
        found = run_reads.list_runs(conn, ids, status=f.status, spec_slug=f.spec_slug, environment=f.environment,
                                    workspace_id=ws_id, since=f.since, until=f.until, before=decode_cursor(before),
                                    limit=limit + 1)
        more = len(found) > limit
        found = found[:limit]
        cells = web_reads.phase_strips(conn, [r.id for r in found])
    # each run's phases as (name, status) for the small strip in the list (Airflow's grid, one row)
    strips: dict[str, list[tuple[str, str]]] = {r.id: [] for r in found}
    for c in cells:
        shown = shown_phase_status(c.status, c.attempt)
        strips[c.run_id].append((c.name, shown))
    rows = [{"id": r.id, "status": r.status, "spec_slug": r.spec_slug, "git_sha": r.git_sha,
             "environment": r.environment, "created_at": r.created_at, "started_at": r.started_at,
             "finished_at": r.finished_at, "error": r.error, "created_by": r.created_by,
             "workspace_id": r.workspace_id, "labels": r.labels, "phases": strips[r.id], "workspace": r.workspace}
            for r in found]
    nxt = encode_cursor(found[-1].created_at, found[-1].id) if more and found else None
    return rows, nxt


def spec_slugs(ctx: Context, principal: Principal, limit: int = 200) -> list[str]:
    """Distinct pipelines of the visible runs (a loose index scan: cheap however many runs there are)."""
    with ctx.db.read() as conn:
        return web_reads.spec_slugs(conn, principal.workspace_ids, limit)


def overview(ctx: Context, principal: Principal) -> dict[str, Any]:
    now = ctx.clock()
    since = now - DAY
    ids = principal.workspace_ids
    finished = {st.value for st in PHASE_FINISHED}
    with ctx.db.read() as conn:
        queued = web_reads.queued_phases(conn, ids, now, ready=True)
        backoff = web_reads.queued_phases(conn, ids, now, ready=False)
        phase_rows = web_reads.phase_outcomes(conn, ids, since, finished, SAMPLE_RUNS)
        lease_timeouts = web_reads.events_since(conn, ids, "LEASE_EXPIRED", since)
        durations = [(end - start).total_seconds()
                     for start, end in web_reads.run_spans(conn, ids, since, RunStatus.SUCCEEDED.value, SAMPLE_RUNS)]
        hourly = _hourly(web_reads.runs_per_hour(conn, ids, since), since)
        by_status: dict[str, int] = {str(k): sum(v) for k, v in hourly.items() if k != "x"}
        failures = [{"id": r.id, "spec_slug": r.spec_slug, "environment": r.environment,
                     "finished_at": r.finished_at, "error": r.error}
                    for r in web_reads.newest_runs(conn, ids, [RunStatus.FAILED.value], 5, since=since)]
        running = [{"id": r.id, "spec_slug": r.spec_slug, "environment": r.environment,
                    "started_at": r.started_at, "created_at": r.created_at}
                   for r in web_reads.newest_runs(conn, ids, [RunStatus.RUNNING.value, RunStatus.QUEUED.value], 8)]
        ex = web_reads.executors_last_seen(conn)
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


def _hourly(rows: list[tuple[str, str, int]], since: datetime) -> dict[str, Any]:
    """Runs per hour by status over 24 h, as uPlot series: {x: [epoch…], status: [counts…]}."""
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(25)]
    index = {h.strftime("%Y-%m-%dT%H"): i for i, h in enumerate(hours)}
    series: dict[str, list[int]] = {s: [0] * len(hours) for s in ("succeeded", "failed", "running", "queued",
                                                                  "cancelled")}
    for key, status, n in rows:
        if key in index and status in series:
            series[status][index[key]] += n
    return {"x": [int(h.timestamp()) for h in hours], **series}


def run_lineage(ctx: Context, run_id: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [asdict(e) for e in web_reads.lineage_of_run(conn, run_id)]


def last_success_by_spec(ctx: Context, principal: Principal) -> dict[str, dict[str, Any]]:
    with ctx.db.read() as conn:
        rows = web_reads.last_run_by_spec_status(conn, principal.workspace_ids)
    out: dict[str, dict[str, Any]] = {}
    for slug, status, ts in rows:
        out.setdefault(slug, {})[status] = ts
    return out


def artifact_counts(ctx: Context, run_id: str) -> int:
    with ctx.db.read() as conn:
        return web_reads.artifact_count(conn, run_id)


def executor_leases(ctx: Context) -> dict[str, dict[str, Any]]:
    """Current leases by executor id: the phase, its run and when the lease expires."""
    with ctx.db.read() as conn:
        rows = web_reads.current_leases(conn, [PhaseStatus.CLAIMED.value, PhaseStatus.RUNNING.value])
    return {r.executor_id: asdict(r) for r in rows}


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
    with ctx.db.read() as conn:
        rows = [asdict(r) for r in web_reads.audit_page(conn, limit=limit + 1, actor=f.actor, action_prefix=f.action,
                                                           object_id=f.object_id, since=f.since, before=before)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def audit_verify(ctx: Context, principal: Principal) -> tuple[bool, int | None]:
    from lakehouse.services import audit

    result = audit.verify_chain(ctx, principal)
    return result["ok"], result["first_bad"]


def visible_workspaces(ctx: Context, principal: Principal) -> list[str]:
    with ctx.db.read() as conn:
        return workspace_store.visible_slugs(conn, principal.workspace_ids)
