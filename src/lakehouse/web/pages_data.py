"""Pipelines, Catalog and SQL pages over the data-plane services (imported lazily: they may be absent)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import catalog_view
from lakehouse.services.errors import InvalidInput, RateLimited, ServiceError
from lakehouse.web import queries
from lakehouse.web.render import context, is_htmx, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])


def _service(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"lakehouse.services.{name}")
    except ImportError:
        return None


# --- pipelines ------------------------------------------------------------------------------------

@router.get("/pipelines")
def pipelines_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.READ)
    svc = _service("pipelines")
    ctx = context(request)
    specs = svc.list_specs(ctx.settings.pipelines_dir) if svc and ctx.settings.pipelines_dir.is_dir() else []
    last = queries.last_success_by_spec(ctx, p)
    return page(request, "pipelines.html", nav="pipelines", specs=specs, last=last, envs=ENVIRONMENTS,
                available=svc is not None, folder=str(ctx.settings.pipelines_dir))


@router.get("/pipelines/{name}")
def pipeline_page(name: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.READ)
    svc = _service("pipelines")
    ctx = context(request)
    if svc is None:
        raise InvalidInput("pipeline specs are not available in this build", code="unavailable")
    spec = next((s for s in svc.list_specs(ctx.settings.pipelines_dir) if s["name"] == name), None)
    if spec is None:
        from lakehouse.services.errors import NotFound

        raise NotFound(f"pipeline {name!r} not found in {ctx.settings.pipelines_dir}", code="pipeline_not_found")
    from pathlib import Path

    text = Path(spec["path"]).read_text(errors="replace")
    rows, _ = queries.list_runs(ctx, p, queries.RunFilter(spec_slug=name), limit=10)
    return page(request, "pipeline.html", nav="pipelines", spec=spec, text=text, runs=rows, envs=ENVIRONMENTS,
                error=request.query_params.get("error"))


@router.post("/pipelines/{name}/runs")
def start_pipeline(name: str, request: Request, environment: str = Form("dev"), params: str = Form(""),
                   p: Principal = Depends(user)) -> Response:
    p.require(Action.RUN_CREATE)
    svc = _service("pipelines")
    if svc is None:
        raise InvalidInput("pipeline specs are not available in this build", code="unavailable")
    parsed: dict[str, Any] = {}
    if params.strip():
        import orjson

        try:
            parsed = orjson.loads(params)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"parameters must be a JSON object: {exc}", code="invalid_params") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("parameters must be a JSON object", code="invalid_params")
    run, _ = svc.start_run(context(request), p, name, environment, parsed)
    return RedirectResponse(f"/runs/{run['run_id']}", status_code=303)


# --- catalog --------------------------------------------------------------------------------------

@router.get("/catalog")
def catalog_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    """Where each table is, how big and fresh it is, who writes it; every filter is in the URL."""
    p.require(Action.READ)
    q = request.query_params
    env = q.get("env") or "dev"
    layer = q.get("layer") or None
    f = {"q": q.get("q", "").strip(), "state": q.get("state") or None, "pipeline": q.get("pipeline") or None}
    if f["state"] and f["state"] not in FRESH_STATES:
        raise InvalidInput(f"freshness is one of {', '.join(FRESH_STATES)}", code="invalid_state")
    tables: list[dict[str, Any]] = []
    error = None
    try:
        tables = catalog_view.list_tables(context(request), p, env=env, layer=layer, q=f["q"] or None,
                                          state=f["state"], pipeline=f["pipeline"])
    except ServiceError as exc:
        error = exc.message
    filtered = bool(layer or f["q"] or f["state"] or f["pipeline"])
    return page(request, "catalog.html", nav="catalog", tables=tables, env=env, layer=layer, envs=ENVIRONMENTS,
                available=True, error=error, f=f, filtered=filtered, states=FRESH_STATES,
                pipelines=sorted({t["pipeline"] for t in tables if t["pipeline"]} | (
                    {f["pipeline"]} if f["pipeline"] else set())))


FRESH_STATES = ("fresh", "aging", "late")


def sql_link(sql_name: str, env: str) -> str:
    return "/sql?" + urlencode({"sql": f"SELECT * FROM {sql_name} LIMIT 100", "env": env})


@router.get("/catalog/{env}/{layer}/{table}")
def table_page(env: str, layer: str, table: str, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.READ)
    svc = _service("catalog")
    if svc is None:
        raise InvalidInput("the catalog is not available in this build", code="unavailable")
    ctx = context(request)
    head = catalog_view.table_header(ctx, p, env, layer, table)
    if head is None:
        from lakehouse.services.errors import NotFound

        raise NotFound(f"table {layer}.{table} not found in {env}", code="table_not_found")
    info = svc.describe_table(ctx, p, head["namespace"], table, env=env, sample=20)
    lineage_svc = _service("lineage")
    graph = None
    if lineage_svc is not None:
        try:
            graph = lineage_svc.graph(ctx, p, f"{layer}.{table}", env=env)
        except ServiceError:
            graph = None
    return page(request, "table.html", nav="catalog", t=info, head=head, env=env, graph=graph,
                sql_url=sql_link(info["sql_name"], env))


# --- sql ------------------------------------------------------------------------------------------

NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC", "INT", "LONG")


def is_numeric(type_name: str) -> bool:
    return str(type_name).upper().split("(")[0].strip() in NUMERIC_TYPES


def _browser(ctx: Any, p: Principal, env: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The schema browser (tables with typed columns) and the editor's completion map, for ``env``."""
    try:
        tables = catalog_view.column_types(ctx, p, env=env)
    except ServiceError:
        return [], {}
    return tables, {t["sql_name"]: [c["name"] for c in t["columns"]] for t in tables}


def _example(tables: list[dict[str, Any]]) -> str:
    """A placeholder that names a table that exists (gold first), or none at all."""
    for layer in ("gold", "silver", "bronze"):
        for t in tables:
            if t["layer"] == layer:
                return f"SELECT * FROM {t['sql_name']} LIMIT 10"
    return "SELECT 42 AS answer"


def _result_view(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {**result, "numeric": [is_numeric(c["type"]) for c in result["columns"]]}


@router.get("/sql")
def sql_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    p.require(Action.READ)
    svc = _service("sql")
    q = request.query_params
    ctx = context(request)
    env = q.get("env", "dev") if q.get("env", "dev") in ENVIRONMENTS else "dev"
    history = svc.search_history(ctx, p, q=q.get("q") or None, limit=30) if svc else []
    text = q.get("sql", "")
    if q.get("query", "").isdigit() and svc is not None:
        text = svc.get_query(ctx, p, int(q["query"]))["sql"]
    tables, completion = _browser(ctx, p, env)
    return page(request, "sql.html", nav="sql", history=history, text=text, env=env, envs=ENVIRONMENTS,
                available=svc is not None, search=q.get("q", ""), tables=tables, completion=completion,
                example=_example(tables))


@router.post("/sql")
async def run_sql(request: Request, sql: str = Form(""), env: str = Form("dev"), p: Principal = Depends(user)
                  ) -> HTMLResponse:
    """Run a query on the SQL pool (never on an HTTP thread); too many at once is a 429 with Retry-After.
    An htmx answer carries the result and, out of band, the refreshed history."""
    svc = _service("sql")
    if svc is None:
        raise InvalidInput("the SQL service is not available in this build", code="unavailable")
    p.require(Action.QUERY)
    ctx = context(request)
    result = error = None
    status, headers = 200, {}
    try:
        result = await svc.run_query_in_pool(ctx, p, sql, "duckdb", env, limit_preview=200)
    except InvalidInput as exc:
        error = {"message": exc.message, "details": exc.details or {}}
    except RateLimited as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        error = {"message": exc.message, "details": {}}
        headers = {"Retry-After": str(int(details.get("retry_after_s", 1)))}
        status = 200 if is_htmx(request) else exc.status  # htmx swaps only 2xx answers into the page
    template = "sql_result.html" if is_htmx(request) else "sql.html"
    history = await run_in_threadpool(svc.search_history, ctx, p, limit=30)
    extra: dict[str, Any] = {}
    if not is_htmx(request):
        tables, completion = await run_in_threadpool(_browser, ctx, p, env)
        extra = {"tables": tables, "completion": completion, "example": _example(tables)}
    answer = page(request, template, nav="sql", result=_result_view(result), error=error, text=sql, env=env,
                  envs=ENVIRONMENTS, history=history, available=True, search="", status_code=status,
                  oob_history=is_htmx(request), **extra)
    answer.headers.update(headers)
    return answer


@router.get("/sql/queries/{query_id}/result.{fmt}")
def download_result(query_id: int, fmt: str, request: Request, p: Principal = Depends(user)) -> Response:
    """The stored result; the service checks the ``query`` right in the query's workspace (403 for a viewer)."""
    svc = _service("sql")
    if svc is None or fmt not in ("csv", "parquet"):
        raise InvalidInput("download as .csv or .parquet", code="invalid_format")
    path = svc.result_file(context(request), p, query_id)
    if fmt == "parquet":
        return FileResponse(path, media_type="application/vnd.apache.parquet",
                            filename=f"query-{query_id}.parquet")

    def rows() -> Any:
        import io

        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        first = True
        for batch in pf.iter_batches(batch_size=10_000):
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=first))
            first = False
            yield buf.getvalue()

    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="query-{query_id}.csv"'})
