"""Overview, Runs, Run detail and Executors: the run is the centre."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS, PhaseSpec, RunRequest
from lakehouse.domain.states import RunStatus
from lakehouse.services import artifacts, executors, runs
from lakehouse.services.auth import Principal
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.web import queries
from lakehouse.web.render import context, is_htmx, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])
PREVIEW_BYTES = 64 * 1024
TEXT_TYPES = ("text/", "application/json", "application/x-ndjson", "application/yaml", "application/sql")
STATE_EVENTS = ("RUN_", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_SUCCEEDED", "PHASE_FAILED", "PHASE_REQUEUED",
                "PHASE_SKIPPED", "LEASE_EXPIRED", "ARTIFACT_REGISTERED")


FRESHNESS_SLO = timedelta(hours=24)


def _freshness(request: Request, p: Principal) -> list[dict[str, Any]] | None:
    """Gold tables with the age of their last snapshot against a 24 h SLO (from the catalog service)."""
    try:
        from lakehouse.services import catalog
    except ImportError:
        return None
    ctx = context(request)
    now = ctx.clock()
    try:
        tables = catalog.list_tables(ctx, p, layer="gold")
    except Exception:  # the warehouse may be unreachable; the overview still answers
        return None
    out = []
    for t in sorted(tables, key=lambda t: (t["env"] != "prod", t["sql_name"]))[:12]:
        try:
            info = catalog.describe_table(ctx, p, t["namespace"], t["table"], env=t["env"], sample=0)
        except Exception:
            continue
        last = info["snapshots"][-1]["timestamp"] if info["snapshots"] else None
        age = (now - last).total_seconds() if last else None
        slo = FRESHNESS_SLO.total_seconds()
        out.append({**t, "last": last, "age_s": age, "slo_s": slo, "late": age is None or age > slo,
                    "fill": min(100.0, 100 * (age or slo) / slo)})
    return out


@router.get("/")
def overview(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    data = queries.overview(ctx, p)
    return page(request, "overview.html", nav="overview", o=data, freshness=_freshness(request, p))


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
    f = queries.RunFilter(status=status, spec_slug=q.get("pipeline") or None, environment=q.get("env") or None,
                          workspace=q.get("workspace") or None, since=_date(q.get("from")),
                          until=_date(q.get("to"), end=True))
    rows, nxt = queries.list_runs(context(request), p, f, before=q.get("before"), limit=50)
    template = "runs_rows.html" if is_htmx(request) and q.get("before") else "runs.html"
    return page(request, template, nav="runs", rows=rows, next_cursor=nxt, f=f, envs=ENVIRONMENTS,
                statuses=[s.value for s in RunStatus], pipelines=queries.spec_slugs(context(request), p),
                workspaces=queries.visible_workspaces(context(request), p),
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
        status = ph["status"]
        if status == "queued" and ph["attempt"] > 0:
            status = "retrying"
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
    return {"run": run, "events": events, "event_total": run["last_seq"], "artifacts": arts, "bars": bars,
            "span_total": total, "failed_phase": failed, "before_failure": before_failure, "dq": dq,
            "lineage": queries.run_lineage(ctx, run_id), "finished": run["status"] in ("succeeded", "failed",
                                                                                        "cancelled")}


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    view = _run_view(request, run_id, p)
    tab = request.query_params.get("tab", "events")
    return page(request, "run.html", nav="runs", tab=tab, state_events=STATE_EVENTS, **view)


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
def rerun(run_id: str, request: Request, from_phase: str = Form(""), p: Principal = Depends(user)) -> Response:
    """A new run of the same spec, git sha and inputs; from a phase on, with earlier outputs as input."""
    p.require(Action.RUN_CREATE)
    ctx = context(request)
    old = runs.get_run(ctx, run_id, p)
    phases = old["phases"]
    manifest = dict(old["input_manifest"] or {})
    if from_phase:
        names = [ph["name"] for ph in phases]
        if from_phase not in names:
            raise NotFound(f"run has no phase {from_phase!r}", code="phase_not_found")
        i = names.index(from_phase)
        manifest["previous_outputs"] = {ph["name"]: ph["output_manifest"] for ph in phases[:i]
                                        if ph["status"] == "succeeded"}
        phases = phases[i:]
    req = RunRequest(
        spec_slug=old["spec_slug"], git_sha=old["git_sha"], environment=old["environment"], workspace=old["workspace"],
        input_manifest=manifest,
        labels={**(old["labels"] or {}), "rerun_of": run_id, **({"from_phase": from_phase} if from_phase else {})},
        phases=[PhaseSpec(name=ph["name"], type=ph["type"], capability=ph["capability"], params=ph["params"] or {},
                          timeout_s=ph["timeout_s"], max_attempts=ph["max_attempts"]) for ph in phases])
    new, _ = runs.create_run(ctx, req, p)
    return RedirectResponse(f"/runs/{new['run_id']}", status_code=303)


@router.get("/runs/{run_id}/artifacts/{sha256}")
def artifact_preview(run_id: str, sha256: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    arts = [a for a in artifacts.list_for_run(ctx, run_id, p) if a["sha256"] == sha256]
    if not arts:
        raise NotFound(f"artifact {sha256} not found in run {run_id}", code="artifact_not_found")
    art = arts[0]
    _meta, store = artifacts.open_blob(ctx, sha256, p)
    text = None
    if art["media_type"].startswith(TEXT_TYPES) or art["name"].endswith((".json", ".csv", ".txt", ".sql", ".md",
                                                                         ".log", ".yaml", ".yml")):
        with store.path(sha256).open("rb") as fh:
            text = fh.read(PREVIEW_BYTES).decode("utf-8", errors="replace")
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
    return page(request, "executors.html", nav="executors", rows=rows, stale_s=ctx.settings.executor_stale_s)
