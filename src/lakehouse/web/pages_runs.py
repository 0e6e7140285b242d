"""Overview, Runs, Run detail and Executors: the run is the centre."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.domain.states import RUN_FINISHED, RunStatus, shown_phase_status
from lakehouse.services import artifacts, catalog_view, executors, reruns, runs
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.web import queries, run_outputs, run_score
from lakehouse.web.render import context, is_htmx, mark_web, page, query_url, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])
PREVIEW_BYTES = 64 * 1024
STATE_EVENTS = ("RUN_", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_SUCCEEDED", "PHASE_FAILED", "PHASE_REQUEUED",
                "PHASE_SKIPPED", "LEASE_EXPIRED", "ARTIFACT_REGISTERED")


FINISHED = {s.value for s in RUN_FINISHED}


def _freshness(request: Request, p: Principal) -> list[dict[str, Any]] | None:
    """Gold tables, most overdue first, with the age of their last snapshot against their SLO."""
    ctx = context(request)
    try:
        tables = catalog_view.list_tables(ctx, p, layer="gold")
    except Exception:  # the warehouse may be unreachable; the overview still answers
        return None
    order = {"late": 0, "aging": 1, "fresh": 2}
    tables.sort(key=lambda t: (t["env"] != "prod", order[t["state"]], -(t["ratio"] or 0), t["sql_name"]))
    return [{**t, "last": t["last_written"]} for t in tables[:12]]


@router.get("/")
def overview(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    data = queries.overview(ctx, p)
    from lakehouse.services import scheduler

    return page(request, "overview.html", nav="overview", o=data, freshness=_freshness(request, p),
                schedule=scheduler.overview(ctx, p))


def _date(value: str | None, end: bool = False) -> datetime | None:
    if not value:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"dates look like 2026-11-21, not {value!r}", code="invalid_date") from None
    d = d if d.tzinfo else d.replace(tzinfo=UTC)
    return d + timedelta(days=1) if end and len(value) <= 10 else d


@router.get("/runs")
def runs_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    q = request.query_params
    status = q.get("status") or None
    if status and status not in {s.value for s in RunStatus}:
        raise InvalidInput(f"unknown status {status!r}", code="invalid_status")
    sort = q.get("sort") or ""
    if sort not in queries.SORTS:
        raise InvalidInput(f"sort is score (worst first) or -score (best first), not {sort!r}", code="invalid_sort")
    f = queries.RunFilter(status=status, spec_slug=q.get("pipeline") or None, environment=q.get("env") or None,
                          workspace=q.get("workspace") or None, since=_date(q.get("from")),
                          until=_date(q.get("to"), end=True))
    rows, nxt = queries.list_runs(context(request), p, f, before=q.get("before"), limit=50, sort=sort)
    template = "runs_rows.html" if is_htmx(request) and q.get("before") else "runs.html"
    return page(request, template, nav="runs", rows=rows, next_cursor=nxt, f=f, envs=ENVIRONMENTS,
                statuses=[s.value for s in RunStatus], pipelines=queries.spec_slugs(context(request), p),
                workspaces=queries.visible_workspaces(context(request), p), sort=sort, finished_statuses=FINISHED,
                score_band=run_score.band,
                from_=q.get("from", ""), to=q.get("to", ""), first_page=not q.get("before"))


def _run_view(request: Request, run_id: str, p: Principal) -> dict[str, Any]:
    ctx = context(request)
    run = runs.get_run(ctx, run_id, p)
    window = 1000  # the newest events; older ones stay one API call away (/ops/runs/{id}/events?after=)
    events = runs.read_events(ctx, run_id, p, max(0, int(run["last_seq"]) - window), window)
    arts = artifacts.list_for_run(ctx, run_id, p)
    now = ctx.clock()
    t0 = run["created_at"]
    ends = [ph["finished_at"] or now for ph in run["phases"] if ph["claimed_at"] or ph["started_at"]]
    t1 = max([*ends, run["finished_at"] or now, t0 + timedelta(seconds=1)])
    total = (t1 - t0).total_seconds()
    bars = []
    for ph in run["phases"]:
        start = ph["started_at"] or ph["claimed_at"]
        status = shown_phase_status(ph["status"], ph["attempt"])
        bar = {"name": ph["name"], "status": status, "left": 0.0, "width": 0.0, "start": start,
               "end": ph["finished_at"]}
        if start is not None:
            end = ph["finished_at"] or now
            bar["left"] = 100 * (start - t0).total_seconds() / total
            bar["width"] = max(0.6, 100 * (end - start).total_seconds() / total)
        bars.append(bar)
    failed = next((ph for ph in run["phases"] if ph["status"] == "failed"), None)
    before_failure = [e for e in events if failed and e["phase"] == failed["name"]][-8:] if failed else []
    dq = [e for e in events if e["type"] == "DQ_RESULT"]
    finished = run["status"] in FINISHED
    current = reruns.current_spec(ctx, run) if finished and p.can(Action.RUN_CREATE) else None
    # the page resumes the live stream after the last event it rendered, never before (no duplicates)
    last_seq = max([int(run["last_seq"]), *(int(e["seq"]) for e in events)])
    return {"run": run, "events": events, "event_total": last_seq, "last_seq": last_seq, "artifacts": arts,
            "bars": bars, "span_total": total, "failed_phase": failed, "before_failure": before_failure, "dq": dq,
            "lineage": queries.run_lineage(ctx, run_id), "finished": finished,
            "spec_version": run_outputs.spec_version(run), "current_spec": current}


TABS = ("events", "outputs", "artifacts", "dq", "lineage", "inputs")


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, p: Principal = Depends(user)) -> Response:
    if not reruns.FULL_RE.match(run_id):  # a short id, as the lists and the CLI show them
        try:
            full = reruns.resolve_run_id(context(request), p, run_id)
        except InvalidInput:
            raise NotFound(f"run {run_id} not found", code="run_not_found") from None
        return RedirectResponse(query_url(request).replace(f"/runs/{run_id}", f"/runs/{full}", 1), status_code=307)
    view = _run_view(request, run_id, p)
    tab = request.query_params.get("tab", "events")
    tab = tab if tab in TABS else "events"
    extra: dict[str, Any] = {}
    if tab == "outputs":
        extra["outputs"] = run_outputs.outputs_summary(view["run"], view["artifacts"], view["dq"])
    elif tab == "inputs":
        extra["inputs"] = run_outputs.inputs_summary(view["run"])
    score = run_score.score_view(context(request), p, run_id, view["run"]["status"])
    return page(request, "run.html", nav="runs", tab=tab, state_events=STATE_EVENTS, score=score,
                score_band=run_score.band, **view, **extra)


@router.get("/runs/{run_id}/live")
def run_live(run_id: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    """The part of the run page that changes with its state (header, timeline, failure, artifacts)."""
    return page(request, "run_live.html", nav="runs", tab=request.query_params.get("tab", "events"),
                **_run_view(request, run_id, p))


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: str, request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.RUN_CANCEL)
    runs.cancel_run(context(request), run_id, p, reason=f"cancelled by {p.name} in the Control Room")
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/rerun")
def rerun(run_id: str, request: Request, from_phase: str = Form(""), mode: str = Form("as_ran"),
          p: Principal = Depends(user)) -> Response:
    """A new run: as this one ran (its frozen spec, git sha and inputs) or with the current spec; from a
    phase on, with earlier outputs as input."""
    p.require(Action.RUN_CREATE)
    if mode not in ("as_ran", "current"):
        raise InvalidInput("mode is as_ran or current", code="invalid_mode")
    new = reruns.rerun(context(request), p, run_id, from_phase=from_phase or None,
                       mode="current" if mode == "current" else "as_ran")
    return RedirectResponse(f"/runs/{new['run_id']}", status_code=303)


@router.get("/runs/{run_id}/artifacts/{sha256}")
def artifact_preview(run_id: str, sha256: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    arts = [a for a in artifacts.list_for_run(ctx, run_id, p) if a["sha256"] == sha256]
    if not arts:
        raise NotFound(f"artifact {sha256} not found in run {run_id}", code="artifact_not_found")
    art = arts[0]
    _meta, content = artifacts.open_blob(ctx, sha256, p)
    text = None
    try:
        if run_outputs.previewable(art):
            head = bytearray()
            for chunk in content:
                head += chunk
                if len(head) >= PREVIEW_BYTES:
                    break
            text = bytes(head[:PREVIEW_BYTES]).decode("utf-8", errors="replace")
    finally:
        content.close()
    return page(request, "artifact.html", nav="runs", art=art, text=text, truncated=art["size_bytes"] > PREVIEW_BYTES)


@router.get("/executors")
def executors_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    p.require(Action.READ)
    rows = executors.list_executors(ctx, p)
    leases = queries.executor_leases(ctx)
    for r in rows:
        lease = leases.get(r["executor_id"])
        r["lease"] = lease if lease and p.can_see(lease["workspace_id"]) else None
    return page(request, "executors.html", nav="executors", rows=rows, stale_s=ctx.settings.executor_stale_s,
                forgotten=request.query_params.get("forgotten"))


@router.post("/executors/forget")
def forget_executors(request: Request, executor_id: str = Form(""), p: Principal = Depends(user)) -> Response:
    """Forget one stopped or stale executor, or (no id) every one silent for a day."""
    gone = executors.forget(context(request), p, executor_id=executor_id or None,
                            silent_for=None if executor_id else timedelta(days=1))
    return RedirectResponse(f"/executors?forgotten={len(gone)}", status_code=303)
