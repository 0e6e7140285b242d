"""Read-only queries behind the Overview, Runs, Executors and Audit pages, scoped to the viewer's
workspaces. The statements are in ``store/web_reads.py`` (the runs listing is the store's one keyset
listing, ``store/run_reads.py``); this module shapes their rows for the templates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import PHASE_FINISHED, PhaseStatus, RunStatus, shown_phase_status
from lakehouse.services.context import Context
from lakehouse.store import run_reads, web_reads
from lakehouse.store import workspaces as workspace_store
from lakehouse.store.types_public import Connection

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


SORTS = ("", "score", "-score")  # newest first; worst score first; best score first (unscored runs last)


def _score_cursor(score: float, run_id: str) -> str:
    return f"s:{score!r}~{run_id}"


def list_runs(ctx: Context, principal: Principal, f: RunFilter, before: str | None = None,
              limit: int = 50, sort: str = "") -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated by (created_at, id); or by score (``sort``), keyset by (score, id)
    over the scored runs, then the runs without a score, newest first. Returns (rows, cursor of the
    next page); each row carries its stored score (None: not scored)."""
    ids = principal.workspace_ids
    with ctx.db.read() as conn:
        ws_id = None
        if f.workspace:
            ws_id = workspace_store.id_of(conn, f.workspace)
            if ws_id is None:  # an unknown workspace has no runs
                return [], None
        filters: dict[str, Any] = {"status": f.status, "spec_slug": f.spec_slug, "environment": f.environment,
                                   "workspace_id": ws_id, "since": f.since, "until": f.until}
        if sort in ("score", "-score"):
            found, nxt = _by_score(conn, ids, filters, before, limit, descending=sort == "-score")
        else:
            found = run_reads.list_runs(conn, ids, before=decode_cursor(before), limit=limit + 1, **filters)
            nxt = encode_cursor(found[limit - 1].created_at, found[limit - 1].id) if len(found) > limit else None
            found = found[:limit]
        cells = web_reads.phase_strips(conn, [r.id for r in found])
        scored = web_reads.scores_of(conn, [r.id for r in found])
    # each run's phases as (name, status) for the small strip in the list (Airflow's grid, one row)
    strips: dict[str, list[tuple[str, str]]] = {r.id: [] for r in found}
    for c in cells:
        shown = shown_phase_status(c.status, c.attempt)
        strips[c.run_id].append((c.name, shown))
    rows = [{"id": r.id, "status": r.status, "spec_slug": r.spec_slug, "git_sha": r.git_sha,
             "environment": r.environment, "created_at": r.created_at, "started_at": r.started_at,
             "finished_at": r.finished_at, "error": r.error, "created_by": r.created_by,
             "workspace_id": r.workspace_id, "labels": r.labels, "phases": strips[r.id], "workspace": r.workspace,
             "score": scored.get(r.id)}
            for r in found]
    return rows, nxt


def _by_score(conn: Connection, ids: Collection[int] | None, filters: dict[str, Any], before: str | None, limit: int,
              descending: bool) -> tuple[list[run_reads.RunListRow], str | None]:
    """One page of the score order: the scored runs from the cursor ``s:<score>~<id>``, then (when they
    run out) the unscored ones from the start or from the cursor ``u:<created_at>~<id>``."""
    found: list[run_reads.RunListRow] = []
    cursor = before or ""
    if not cursor.startswith("u:"):
        after = None
        if cursor.startswith("s:") and "~" in cursor:
            text, _, run_id = cursor[2:].partition("~")
            try:
                after = (float(text), run_id)
            except ValueError:
                after = None
        page = run_reads.list_runs_by_score(conn, ids, limit=limit + 1, descending=descending, after=after,
                                            **filters)
        if len(page) > limit:
            last, last_score = page[limit - 1]
            return [r for r, _ in page[:limit]], _score_cursor(last_score, last.id)
        found = [r for r, _ in page]
        cursor = "u:"
    rest = limit - len(found)
    tail = run_reads.list_runs(conn, ids, before=decode_cursor(cursor[2:]), limit=rest + 1, unscored=True,
                               **filters)
    shown = tail[:rest]
    if len(tail) <= rest:
        return found + shown, None
    if not shown:  # the page was full of scored runs: the unscored ones start on the next
        return found, "u:"
    return found + shown, "u:" + encode_cursor(shown[-1].created_at, shown[-1].id)


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
        durations_hourly = _duration_hours(web_reads.duration_percentiles_per_hour(
            conn, ids, since, RunStatus.SUCCEEDED.value), since)
        q_start = _floor(now, QUEUE_STEP) - DAY
        depth = web_reads.queue_depth(conn, ids, q_start, QUEUE_STEP, QUEUE_POINTS, now)
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
        "failures": failures, "running": running, "durations": durations_hourly,
        "queue": {"x": [int((q_start + k * QUEUE_STEP).timestamp()) for k in range(QUEUE_POINTS)]
              + [int(now.timestamp())], "depth": depth},
        **_chart_text(durations_hourly, q_start, depth, now),
    }


QUEUE_STEP = timedelta(minutes=15)
QUEUE_POINTS = 97  # every 15 min over 24 h, both ends included (and one more: now)


def _floor(t: datetime, step: timedelta) -> datetime:
    return t - (t - datetime(2000, 1, 1, tzinfo=t.tzinfo)) % step


def _duration_hours(rows: list[tuple[str, float, float, int]], since: datetime) -> dict[str, Any]:
    """p50/p95 run duration per hour over 24 h, as uPlot series (None where no run finished)."""
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(25)]
    index = {h.strftime("%Y-%m-%dT%H"): i for i, h in enumerate(hours)}
    out: dict[str, list[Any]] = {"p50": [None] * len(hours), "p95": [None] * len(hours), "runs": [0] * len(hours)}
    for key, p50, p95, n in rows:
        if key in index:
            i = index[key]
            out["p50"][i], out["p95"][i], out["runs"][i] = round(p50, 3), round(p95, 3), n
    return {"x": [int(h.timestamp()) for h in hours], **out}


def _chart_text(durations: dict[str, Any], q_start: datetime, depth: list[int], now: datetime) -> dict[str, Any]:
    """What the two charts say, as text (their accessible alternative): the hours with runs, the
    queue depth on each hour mark, and the peak of the queue."""
    series = zip(durations["x"], durations["p50"], durations["p95"], durations["runs"], strict=True)
    hours = [{"at": datetime.fromtimestamp(x, tz=now.tzinfo), "p50": p50, "p95": p95, "runs": n}
             for x, p50, p95, n in series if n]
    marks = [{"at": q_start + k * QUEUE_STEP, "depth": depth[k]} for k in range(0, QUEUE_POINTS, 4)]
    peak = max(range(len(depth)), key=lambda k: (depth[k], k))
    return {"duration_rows": hours, "queue_rows": marks, "queue_now": depth[-1],
            "queue_peak": {"depth": depth[peak], "at": q_start + peak * QUEUE_STEP if peak < QUEUE_POINTS else now}}


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


def workspaces_allowing(ctx: Context, principal: Principal, action: Action,
                        slugs: Iterable[str] | None = None) -> list[str]:
    """The workspaces (slugs; of ``slugs``, or of all the viewer sees) where the viewer may do
    ``action``: none when the role never may (no form, no button)."""
    from lakehouse.services import workspaces

    if not principal.can(action):
        return []
    candidates = visible_workspaces(ctx, principal) if slugs is None else sorted(set(slugs))
    return [slug for slug in candidates if principal.can_in(action, workspaces.resolve_for(ctx, principal, slug))]
