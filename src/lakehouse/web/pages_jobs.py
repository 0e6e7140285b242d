"""Jobs in the Control Room: the list, a job (recent runs by phases grid, versions and diff, schedule,
promotion per environment, backfills), the job form, and a backfill's progress. Pages parse the form,
call one service and render; the services check every permission."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehouse.domain.jobs import JobDefinition, JobType, ParamType
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.domain.states import RunStatus
from lakehouse.services import backfills, connections, job_runs, jobs, promotions
from lakehouse.services.errors import InvalidInput, ServiceError
from lakehouse.web import queries
from lakehouse.web.render import context, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])
TABS = ("runs", "versions", "schedule", "promotion", "backfills")
PARAM_ROWS = 3  # empty parameter rows the form offers besides the job's own
# form fields an error path is shown next to (longest first wins); anything else goes on top
FORM_FIELDS = ("name", "type", "description", "owner", "environment", "sql.query", "sql.engine", "sql.connection",
               "sql.target",
               "sql.mode", "sql.keys", "sql", "python.callable", "python", "pipeline.name", "pipeline",
               "schedule.cron", "schedule.timezone", "schedule.catchup", "schedule.environment", "schedule",
               "triggers", "connections", "max_attempts", "timeout_s", "params", "yaml")


async def _form(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    form = await request.form()
    single = {k: v for k, v in form.items() if isinstance(v, str)}
    multi: dict[str, list[str]] = {}
    for k, v in form.multi_items():
        if isinstance(v, str):
            multi.setdefault(k, []).append(v)
    return single, multi


def field_errors(exc: ServiceError) -> dict[str, str]:
    """A service error's details as {form field: message} (the first message per field)."""
    out: dict[str, str] = {}
    details = exc.details if isinstance(exc.details, list) else []
    for d in details:
        if not isinstance(d, dict):
            continue
        where = str(d.get("field", "definition"))
        key = "definition"
        for f in sorted(FORM_FIELDS, key=len, reverse=True):
            if where == f or where.startswith(f + "."):
                key = f
                break
        if where.startswith("params.") and key == "params":
            key = where if where.count(".") == 1 else "params"
        out.setdefault(key, str(d.get("message", "")))
    if not out:
        out["definition"] = exc.message
    return out


# --- the form <-> a definition -----------------------------------------------------------------

def definition_from_form(form: dict[str, str], multi: dict[str, list[str]]) -> dict[str, Any]:
    """The job definition a filled-in form describes (validated by the service, not here)."""
    def text(key: str) -> str:
        return (form.get(key) or "").strip()

    def names(key: str) -> list[str]:
        return [x.strip() for x in text(key).replace("\n", ",").split(",") if x.strip()]

    kind = text("type") or "sql"
    d: dict[str, Any] = {"name": text("name"), "type": kind, "description": text("description"),
                         "environment": text("environment") or "dev"}
    if text("owner"):
        d["owner"] = text("owner")
    params: dict[str, Any] = {}
    for i in range(int(form.get("param_rows") or 0)):
        pname = text(f"param_name_{i}")
        if not pname:
            continue
        p: dict[str, Any] = {"type": text(f"param_type_{i}") or "string"}
        if text(f"param_default_{i}"):
            p["default"] = text(f"param_default_{i}")
        if p["type"] == "enum":
            p["values"] = names(f"param_values_{i}")
        params[pname] = p
    if params:
        d["params"] = params
    if kind == "sql":
        sql: dict[str, Any] = {"query": form.get("sql_query") or "", "engine": text("sql_engine") or "duckdb"}
        if text("sql_connection"):
            sql["connection"] = text("sql_connection")
        if text("sql_target"):
            sql["target"] = text("sql_target")
            sql["mode"] = text("sql_mode") or "overwrite"
            if names("sql_keys"):
                sql["keys"] = names("sql_keys")
        d["sql"] = sql
    elif kind == "python":
        d["python"] = {"callable": text("python_callable")}
    elif kind == "pipeline":
        d["pipeline"] = {"name": text("pipeline_name")}
    else:
        d[kind] = {}
    if text("schedule_cron"):
        d["schedule"] = {"cron": text("schedule_cron"), "timezone": text("schedule_timezone") or "UTC",
                         "catchup": text("schedule_catchup") or "none",
                         "environment": text("schedule_environment") or "dev"}
    if names("triggers"):
        d["triggers"] = [{"on_success_of": t} for t in names("triggers")]
    chosen = [c for c in multi.get("connections", []) if c]
    if chosen:
        d["connections"] = chosen
    return d


def form_from_definition(d: dict[str, Any]) -> dict[str, str]:
    sql = d.get("sql") or {}
    sched = d.get("schedule") or {}
    out = {"name": d.get("name", ""), "type": d.get("type", "sql"), "description": d.get("description", ""),
           "owner": d.get("owner") or "", "environment": d.get("environment", "dev"),
           "sql_query": sql.get("query", ""), "sql_engine": sql.get("engine", "duckdb"),
           "sql_connection": sql.get("connection") or "",
           "sql_target": sql.get("target") or "", "sql_mode": sql.get("mode", "overwrite"),
           "sql_keys": ", ".join(sql.get("keys") or []),
           "python_callable": (d.get("python") or {}).get("callable", ""),
           "pipeline_name": (d.get("pipeline") or {}).get("name") or "",
           "schedule_cron": sched.get("cron", ""), "schedule_timezone": sched.get("timezone", "UTC"),
           "schedule_catchup": sched.get("catchup", "none"), "schedule_environment": sched.get("environment", "dev"),
           "triggers": ", ".join(t["on_success_of"] for t in d.get("triggers") or [])}
    for i, (name, p) in enumerate((d.get("params") or {}).items()):
        out |= {f"param_name_{i}": name, f"param_type_{i}": p.get("type", "string"),
                f"param_default_{i}": "" if p.get("default") is None else str(p["default"]).lower()
                if isinstance(p.get("default"), bool) else str(p["default"]),
                f"param_values_{i}": ", ".join(p.get("values") or [])}
    return out


def fits_the_form(d: dict[str, Any]) -> bool:
    """Whether the form can edit this definition without losing anything (else: YAML)."""
    try:
        form = form_from_definition(d)
        form["param_rows"] = str(len(d.get("params") or {}))
        again = definition_from_form(form, {"connections": list(d.get("connections") or [])})
        return JobDefinition.model_validate(again).canonical() == JobDefinition.model_validate(d).canonical()
    except Exception:
        return False


def _form_page(request: Request, p: Principal, *, mode: str, form: dict[str, str], status: int = 200,
               errors: dict[str, str] | None = None, workspace: str = "default", yaml_text: str | None = None,
               connection_names: list[str] | None = None, selected: list[str] | None = None) -> HTMLResponse:
    ctx = context(request)
    if connection_names is None:
        try:
            connection_names = sorted({c["name"] for c in connections.list_connections(ctx, p)
                                       if c["workspace"] == workspace})
        except ServiceError:
            connection_names = []
    rows = max(len([k for k in form if k.startswith("param_name_")]), 0) + PARAM_ROWS
    return page(request, "job_form.html", status_code=status, nav="jobs", mode=mode, form=form,
                errors=errors or {}, workspace=workspace, workspaces=queries.visible_workspaces(ctx, p),
                types=[t.value for t in JobType], param_types=[t.value for t in ParamType], envs=ENVIRONMENTS,
                param_rows=rows, yaml_text=yaml_text, connection_names=connection_names,
                selected=selected or [])


# --- list ---------------------------------------------------------------------------------------

@router.get("/jobs")
def jobs_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    q = request.query_params
    ctx = context(request)
    workspace = q.get("workspace") or None
    kind = q.get("type") or None
    last = q.get("last") or None
    if kind and kind not in {t.value for t in JobType}:
        raise InvalidInput(f"unknown job type {kind!r}", code="invalid_type")
    if last and last not in {s.value for s in RunStatus} | {"never"}:
        raise InvalidInput(f"unknown status {last!r}", code="invalid_status")
    rows = jobs.list_jobs(ctx, p, workspace)
    total = len(rows)
    text = (q.get("q") or "").strip().lower()
    rows = [r for r in rows if (not kind or r["type"] == kind) and (not text or text in r["name"])
            and (not last or (r["last_run"]["status"] if r["last_run"] else "never") == last)]
    return page(request, "jobs.html", nav="jobs", rows=rows, total=total,
                f={"workspace": workspace, "type": kind, "last": last, "q": q.get("q") or ""},
                types=[t.value for t in JobType], statuses=[s.value for s in RunStatus] + ["never"],
                workspaces=queries.visible_workspaces(ctx, p))


# --- create / edit --------------------------------------------------------------------------------

@router.get("/jobs/new")
def new_job(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.JOB_MANAGE)
    ws = request.query_params.get("workspace") or "default"
    return _form_page(request, p, mode="create", form={"type": request.query_params.get("type") or "sql",
                                                       "environment": "dev"}, workspace=ws)


async def _save(request: Request, p: Principal, mode: str, workspace: str, name: str | None = None) -> Response:
    form, multi = await _form(request)
    yaml_text = form.get("yaml")
    ws = form.get("workspace") or workspace
    body: Any = yaml_text if yaml_text and yaml_text.strip() else definition_from_form(form, multi)
    try:
        if name is not None:
            parsed = jobs.parse(body)
            if parsed.name != name:
                raise InvalidInput("name: jobs are not renamed; create a new job instead", code="invalid_job",
                                   details=[{"field": "name", "message": f"stays {name} (jobs are not renamed)"}])
        saved = jobs.save(context(request), p, ws, body, mode=mode)
    except ServiceError as exc:
        if exc.status in (401, 403, 404) and exc.code != "job_not_found":
            raise
        return _form_page(request, p, mode="create" if mode == "create" else "edit", form=form, status=exc.status,
                          errors=field_errors(exc), workspace=ws, yaml_text=yaml_text,
                          selected=multi.get("connections", []))
    return RedirectResponse(f"/jobs/{quote(ws)}/{saved.job['name']}?saved={saved.outcome}", status_code=303)


@router.post("/jobs/new")
async def create_job(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.JOB_MANAGE)
    return await _save(request, p, "create", "default")


@router.get("/jobs/{workspace}/{name}/edit")
def edit_job(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.JOB_MANAGE)
    j = jobs.get_job(context(request), p, workspace, name)
    d = j["definition"]
    as_yaml = request.query_params.get("as") == "yaml" or not fits_the_form(d)
    return _form_page(request, p, mode="edit", form=form_from_definition(d), workspace=workspace,
                      yaml_text=JobDefinition.model_validate(d).canonical() if as_yaml else None,
                      selected=list(d.get("connections") or []))


@router.post("/jobs/{workspace}/{name}/edit")
async def update_job(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.JOB_MANAGE)
    return await _save(request, p, "update", workspace, name)


# --- a job ----------------------------------------------------------------------------------------

def _job_page(request: Request, p: Principal, workspace: str, name: str, status: int = 200, tab: str | None = None,
              **extra: Any) -> HTMLResponse:
    ctx = context(request)
    q = request.query_params
    tab = tab or q.get("tab") or "runs"
    if tab not in TABS:
        tab = "runs"
    j = jobs.get_job(ctx, p, workspace, name)
    d = JobDefinition.model_validate(j["definition"])
    data: dict[str, Any] = {"job": j, "d": d, "tab": tab, "tabs": TABS, "envs": ENVIRONMENTS,
                            "saved": q.get("saved"), "grid": jobs.grid(ctx, p, workspace, name),
                            "promotion": promotions.state(ctx, p, workspace, name)}
    rerun_of = extra.get("rerun_of") or q.get("rerun")
    run_values: dict[str, Any] = {k: "" if v.default is None else v.default for k, v in d.params.items()}
    if rerun_of:
        match = [r for r in data["grid"]["runs"] if r["run_id"] == rerun_of]
        if match:
            from lakehouse.services import runs

            old = runs.get_run(ctx, rerun_of, p)
            run_values |= {k: v for k, v in ((old["input_manifest"] or {}).get("job") or {}).get("params", {}).items()
                           if k in d.params}
        else:
            rerun_of = None
    data["run_values"] = {k: str(v).lower() if isinstance(v, bool) else str(v)
                          for k, v in {**run_values, **extra.pop("run_values", {})}.items()}
    data["rerun_of"] = rerun_of
    if tab == "versions":
        data["versions"] = jobs.versions(ctx, p, workspace, name)
        try:
            a = int(q.get("from") or max(1, j["version"] - 1))
            b = int(q.get("to") or j["version"])
        except ValueError:
            raise InvalidInput("from and to are version numbers", code="invalid_version") from None
        data["diff_from"], data["diff_to"] = a, b
        data["diff"] = jobs.version_diff(ctx, p, workspace, name, a, b)["diff"]
    if tab == "backfills":
        data["backfills"] = backfills.list_for_job(ctx, p, workspace, name)
    if tab == "promotion":
        data["gates"] = promotions.get_gates(ctx, p, workspace)
    extra.pop("rerun_of", None)
    return page(request, "job.html", status_code=status, nav="jobs", **data, **extra)


@router.get("/jobs/{workspace}/{name}")
def job_page(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _job_page(request, p, workspace, name)


@router.post("/jobs/{workspace}/{name}/run")
async def run_job(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    """Run now (with other parameters), or run a run again (same version) with some changed."""
    p.require(Action.JOB_RUN)
    form, _ = await _form(request)
    values = {k.removeprefix("param."): v for k, v in form.items() if k.startswith("param.")}
    rerun_of = form.get("rerun_of") or None
    ctx = context(request)
    try:
        if rerun_of:
            run, _ = job_runs.rerun(ctx, p, rerun_of, values)
        else:
            run, _ = job_runs.run_job(ctx, p, workspace, name, values,
                                      environment=form.get("environment") or None)
    except ServiceError as exc:
        if exc.status in (401, 403, 404):
            raise
        return _job_page(request, p, workspace, name, status=exc.status, run_errors=field_errors(exc),
                         run_error=exc.message, run_values=values, rerun_of=rerun_of)
    return RedirectResponse(f"/runs/{run['run_id']}", status_code=303)


@router.post("/jobs/{workspace}/{name}/pause")
def pause(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    jobs.set_paused(context(request), p, workspace, name, True)
    return RedirectResponse(f"/jobs/{quote(workspace)}/{name}?tab=schedule", status_code=303)


@router.post("/jobs/{workspace}/{name}/resume")
def resume(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    jobs.set_paused(context(request), p, workspace, name, False)
    return RedirectResponse(f"/jobs/{quote(workspace)}/{name}?tab=schedule", status_code=303)


@router.post("/jobs/{workspace}/{name}/promote")
async def promote(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    form, _ = await _form(request)
    action = form.get("action") or "promote"
    env = form.get("to") or form.get("environment") or ""
    ctx = context(request)
    try:
        if action == "approve":
            promotions.approve(ctx, p, workspace, name, env, form.get("comment") or None)
        elif action == "reject":
            promotions.reject(ctx, p, workspace, name, env, form.get("comment") or None)
        else:
            version = int(form["version"]) if form.get("version", "").isdigit() else None
            promotions.promote(ctx, p, workspace, name, env, version, form.get("comment") or None)
    except ServiceError as exc:
        if exc.status in (401, 404) or (exc.status == 403 and exc.code == "forbidden"):
            raise
        return _job_page(request, p, workspace, name, status=exc.status, tab="promotion", promotion_error=exc.message,
                         promotion_env=env)
    return RedirectResponse(f"/jobs/{quote(workspace)}/{name}?tab=promotion", status_code=303)


@router.post("/jobs/{workspace}/{name}/backfills")
async def create_backfill(workspace: str, name: str, request: Request, p: Principal = Depends(user)) -> Response:
    form, _ = await _form(request)
    ctx = context(request)
    try:
        b = backfills.create(ctx, p, workspace, name, backfills.parse_date(form.get("from", ""), "from"),
                             backfills.parse_date(form.get("to", ""), "to"),
                             partitions=[x.strip() for x in (form.get("partitions") or "").split(",") if x.strip()]
                             or None,
                             max_concurrent=int(form.get("max_concurrent") or 4)
                             if (form.get("max_concurrent") or "4").isdigit() else 0,
                             environment=form.get("environment") or None)
    except ServiceError as exc:
        if exc.status in (401, 403, 404):
            raise
        return _job_page(request, p, workspace, name, status=exc.status, tab="backfills",
                         backfill_errors=field_errors(exc),
                         backfill_error=exc.message, backfill_form=form)
    return RedirectResponse(f"/backfills/{b['id']}", status_code=303)


# --- a backfill -----------------------------------------------------------------------------------

@router.get("/backfills/{backfill_id}")
def backfill_page(backfill_id: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    ctx = context(request)
    b = backfills.get(ctx, p, backfill_id)
    pr = b["progress"]
    finished = pr["done"] + pr["failed"] + pr["cancelled"]
    return page(request, "backfill.html", nav="jobs", b=b, finished=finished,
                pct=round(100 * finished / b["total"], 1) if b["total"] else 100.0)


@router.post("/backfills/{backfill_id}/cancel")
def cancel_backfill(backfill_id: str, request: Request, p: Principal = Depends(user)) -> Response:
    backfills.cancel(context(request), p, backfill_id)
    return RedirectResponse(f"/backfills/{backfill_id}", status_code=303)


@router.post("/backfills/{backfill_id}/retry")
def retry_backfill(backfill_id: str, request: Request, p: Principal = Depends(user)) -> Response:
    backfills.retry_failed(context(request), p, backfill_id)
    return RedirectResponse(f"/backfills/{backfill_id}", status_code=303)
