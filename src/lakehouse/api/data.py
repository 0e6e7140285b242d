"""The data plane over HTTP: SQL, query history, lineage and the catalog (/api/…)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api.deps import context, require
from lakehouse.api.errors import error_response
from lakehouse.api.limits import RowId
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import catalog as catalog_service
from lakehouse.services import lineage
from lakehouse.services import sql as sql_service
from lakehouse.services.context import Context
from lakehouse.services.errors import RateLimited

router = APIRouter(prefix="/api", tags=["data"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 401, 403, 404, 422)}
SQL_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 429: {
    "model": ErrorResponse, "description": "too many queries running (the cap is named in `details.cap`)",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}}}


class SqlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=sql_service.MAX_SQL_CHARS)
    engine: str = "duckdb"
    env: str = "dev"
    workspace: str = "default"
    limit: int = Field(default=100, ge=0, le=sql_service.MAX_PREVIEW, description="rows in the preview")
    timeout_s: float | None = Field(default=None, gt=0, description=(
        "seconds before the query is stopped; default and most: the server's sql_max_timeout_s "
        "(asking for more is 422 timeout_too_long)"))


class Column(BaseModel):
    name: str
    type: str


class SnapshotRead(BaseModel):
    table: str
    snapshot_id: int | None


class SqlOut(BaseModel):
    query_id: int
    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    truncated_by: str | None = Field(None, description='"rows" (limit) or "bytes" (sql_preview_max_bytes)')
    duration_ms: float
    snapshot_ids: list[SnapshotRead]
    result_sha256: str
    engine: str
    env: str
    workspace: str


class QueryOut(BaseModel):
    query_id: int
    workspace: str
    env: str
    user: str
    engine: str
    sql: str
    status: str
    error: str | None
    started_at: datetime
    duration_ms: float | None
    rows: int | None
    snapshot_ids: list[SnapshotRead]
    result_sha256: str | None
    run_id: str | None
    result_expired: bool = Field(False, description="the stored result was deleted (retention or quota)")


class QueryList(BaseModel):
    queries: list[QueryOut]
    next_before: int | None


class LineageNode(BaseModel):
    id: str
    layer: str | None
    name: str
    role: str
    distance: int


class LineageEdge(BaseModel):
    source: str
    target: str
    run_id: str | None
    phase: str | None
    updated_at: datetime


class LineageOut(BaseModel):
    table: str
    env: str
    workspace: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class NamespaceOut(BaseModel):
    namespace: str
    layer: str
    env: str
    schema_: str = Field(alias="schema")
    tables: int

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class NamespaceList(BaseModel):
    namespaces: list[NamespaceOut]


class TableItem(BaseModel):
    namespace: str
    table: str
    layer: str
    env: str
    sql_name: str
    metadata_location: str


class TableList(BaseModel):
    tables: list[TableItem]


class SchemaField(BaseModel):
    id: int
    name: str
    type: str
    required: bool
    doc: str | None


class SnapshotOut(BaseModel):
    snapshot_id: int
    parent_id: int | None
    timestamp: datetime
    operation: str | None
    summary: dict[str, str]
    current: bool


class Sample(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


class TableDetail(BaseModel):
    namespace: str
    table: str
    layer: str
    env: str
    workspace: str
    sql_name: str
    location: str
    metadata_location: str
    format_version: int
    schema_: list[SchemaField] = Field(alias="schema")
    partitioning: list[dict[str, Any]]
    current_snapshot_id: int | None
    snapshots: list[SnapshotOut]
    row_count: int
    properties: dict[str, str]
    sample: Sample | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


@router.post("/sql", response_model=SqlOut, responses=SQL_ERRORS)
async def run_sql(body: SqlIn, ctx: Context = Depends(context), p: Principal = Depends(require(Action.QUERY))
                  ) -> Any:
    """Run one read-only statement on the lake (``bronze.x``, ``silver.x``, ``gold.x`` of ``env``;
    ``at_snapshot('bronze.x', id)`` for time travel). The full result is stored as Parquet
    (``GET /api/queries/{query_id}/result``); the answer carries ``limit`` rows, at most
    ``sql_preview_max_bytes`` of them (``truncated_by``). SQL errors are 422 ``sql_error`` with
    ``details.line``/``details.column``; anything but a read is 422 ``sql_not_allowed``. Queries run on
    the server's SQL pool; too many at once for the user, the workspace or the server is 429 with
    ``Retry-After``."""
    try:
        return await sql_service.run_query_in_pool(ctx, p, body.sql, engine=body.engine, env=body.env,
                                                   workspace=body.workspace, limit_preview=body.limit,
                                                   timeout_s=body.timeout_s)
    except RateLimited as exc:
        return too_many(exc)


def too_many(exc: RateLimited) -> JSONResponse:
    """429 with ``Retry-After`` from ``details.retry_after_s``."""
    retry = (exc.details or {}).get("retry_after_s", 1) if isinstance(exc.details, dict) else 1
    return error_response(exc.status, exc.code, exc.message, exc.details, {"Retry-After": str(int(retry))})


@router.get("/queries", response_model=QueryList, responses=ERRORS)
def list_queries(ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ)),
                 q: str | None = Query(None, max_length=1000, description="substring of the SQL text"),
                 user: str | None = None, status: str | None = None, env: str | None = None,
                 workspace: str | None = None, limit: int = Query(50, ge=1, le=1000),
                 before: int | None = Query(None, description="query_id of the last item of the previous page"),
                 ) -> dict[str, Any]:
    """Query history of the caller's workspaces, newest first (keyset pagination with ``before``)."""
    items = sql_service.search_history(ctx, p, q=q, user=user, status=status, limit=limit, before=before,
                               workspace=workspace, env=env)
    return {"queries": items, "next_before": items[-1]["query_id"] if len(items) == limit else None}


@router.get("/queries/{query_id}", response_model=QueryOut, responses=ERRORS)
def get_query(query_id: RowId, ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))
              ) -> dict[str, Any]:
    return sql_service.get_query(ctx, p, query_id)


@router.get("/queries/{query_id}/result", responses={200: {"content": {sql_service.PARQUET_MEDIA_TYPE: {}}}, **ERRORS})
def query_result(query_id: RowId, ctx: Context = Depends(context), p: Principal = Depends(require(Action.QUERY))
                 ) -> FileResponse:
    """The full result of a query as a Parquet file."""
    path = sql_service.result_file(ctx, p, query_id)
    return FileResponse(path, media_type=sql_service.PARQUET_MEDIA_TYPE, filename=f"query-{query_id}.parquet")


@router.get("/lineage", response_model=LineageOut, responses=ERRORS)
def get_lineage(table: str = Query(..., min_length=3, max_length=300), env: str = "dev",
                workspace: str = "default", depth: int | None = Query(None, ge=1, le=100),
                ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """Upstream and downstream tables of ``table`` (``bronze.account_move``), transitively."""
    return lineage.graph(ctx, p, table, env, workspace, depth)


@router.get("/catalog/namespaces", response_model=NamespaceList, responses=ERRORS)
def namespaces(workspace: str = "default", ctx: Context = Depends(context),
               p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """The medallion namespaces (layer x environment) of a workspace with their table counts."""
    return {"namespaces": catalog_service.list_namespaces(ctx, p, workspace)}


@router.get("/catalog/tables", response_model=TableList, responses=ERRORS)
def tables(env: str | None = None, layer: str | None = None, workspace: str = "default",
           ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"tables": catalog_service.list_tables(ctx, p, env=env, layer=layer, workspace=workspace)}


@router.get("/catalog/tables/{namespace}/{table}", response_model=TableDetail, responses=ERRORS)
def table_detail(namespace: str, table: str, env: str | None = None, workspace: str | None = None,
                 sample: int = Query(10, ge=0, le=catalog_service.MAX_SAMPLE),
                 ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """Schema, snapshots, row count and sample rows (the sample only for roles that may query).
    ``namespace`` is ``bronze_dev`` (or ``bronze`` with ``?env=dev``)."""
    return catalog_service.describe_table(ctx, p, namespace, table, env=env, workspace=workspace, sample=sample)
