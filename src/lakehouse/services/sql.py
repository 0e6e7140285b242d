"""The SQL service: read-only queries over the lake, their results as artifacts, and query history.

``run_query`` accepts exactly one read-only statement — a SELECT in any of DuckDB's forms (``WITH``,
``VALUES``, ``FROM x``, ``SHOW``, ``DESCRIBE``, ``SUMMARIZE``) or ``EXPLAIN [ANALYZE]`` of one — and
rejects everything else (``sql_not_allowed``). It runs in a sandboxed DuckDB (no file access beyond
the environment's tables; configuration locked) where the tables are ``bronze.x`` / ``silver.x`` /
``gold.x`` of the chosen environment and ``at_snapshot('bronze.x', <id>)`` reads a past snapshot.
The whole result is stored as a Parquet blob (content-addressed, in ``LAKEHOUSE_HOME/artifacts``),
the answer carries a preview, and every attempt — failures too — is a row of ``query_history``.

Limits (settings ``LAKEHOUSE_SQL_*``): each query gets a DuckDB memory limit and a private spill folder
removed when it ends; its timeout defaults to, and may not exceed, the admin's ``sql_max_timeout_s``
(``timeout_too_long``, 422, beyond: refused rather than clamped, so a caller never believes it got
more time than it has); it runs only if its user and its workspace are under their caps of running
queries (``RateLimited``, see :mod:`lakehouse.services.sql_pool`); the preview is capped in rows and
bytes; stored results expire by age and by workspace quota (:mod:`lakehouse.services.sql_results`).
HTTP edges call :func:`run_query_in_pool`, which runs the query on the SQL pool, never on an HTTP
thread. Downloading a stored result needs the ``query`` right in the query's workspace.

``engine="trino"`` sends the query to the Trino connection (type ``trino``) of the workspace and
environment (``engine_unavailable`` when there is none); there the tables are named as Trino sees the
Iceberg catalog: ``iceberg.bronze_dev.account_move``. Its read-only check is lexical (see
:func:`check_read_only_trino`); give Trino a read-only user as well.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from base64 import b64encode
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from uuid import UUID

import duckdb

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import sql_pool, sql_results, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, ServiceError
from lakehouse.services.query_history import get_query as get_query
from lakehouse.services.query_history import record as _record
from lakehouse.services.query_history import result_file as result_file
from lakehouse.services.query_history import search_history as search_history
from lakehouse.services.sql_check import MAX_SQL_CHARS as MAX_SQL_CHARS
from lakehouse.services.sql_check import check_read_only as check_read_only
from lakehouse.services.sql_check import check_read_only_trino as check_read_only_trino
from lakehouse.services.sql_check import error_position as error_position
from lakehouse.services.sql_check import sql_error as sql_error
from lakehouse.services.sql_results import ResultSink as _ResultSink
from lakehouse.services.sql_trino import run_trino as _run_trino

log = logging.getLogger("lakehouse.sql")

ENGINES = ("duckdb", "trino")
MAX_PREVIEW = 10_000
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def _check_args(sql: Any, engine: str, env: str, limit_preview: int) -> None:
    if not isinstance(sql, str):
        raise InvalidInput("sql must be a string", code="invalid")
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}", code="invalid_engine")
    if env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    if not 0 <= limit_preview <= MAX_PREVIEW:
        raise InvalidInput(f"limit_preview must be between 0 and {MAX_PREVIEW}", code="invalid")


def check_timeout(ctx: Context, timeout_s: float | None) -> float:
    """The timeout a query gets: the admin's maximum when none is asked; more than it is refused."""
    most = ctx.settings.sql_max_timeout_s
    if timeout_s is None:
        return most
    if not timeout_s > 0:
        raise InvalidInput("timeout_s must be positive", code="invalid")
    if timeout_s > most:
        raise InvalidInput(f"timeout_s may be at most {most:g} s on this server (sql_max_timeout_s)",
                           code="timeout_too_long", details={"max_timeout_s": most, "asked_s": timeout_s})
    return float(timeout_s)


async def run_query_in_pool(ctx: Context, principal: Principal, sql: str, engine: str = "duckdb",
                            env: str = "dev", workspace: str = "default", limit_preview: int = 100, *,
                            timeout_s: float | None = None) -> dict[str, Any]:
    """:func:`run_query` on the SQL pool, awaited: what the HTTP edges call (``RateLimited`` ``sql_busy``
    when the pool and its queue are full)."""
    check_timeout(ctx, timeout_s)  # refused before it takes a place in the queue
    return await sql_pool.runtime(ctx).run(run_query, ctx, principal, sql, engine, env, workspace, limit_preview,
                                           timeout_s=timeout_s)


def run_query(ctx: Context, principal: Principal, sql: str, engine: str = "duckdb", env: str = "dev",
              workspace: str = "default", limit_preview: int = 100, *, timeout_s: float | None = None,
              run_id: str | None = None) -> dict[str, Any]:
    """Run one read-only query; returns ``{query_id, columns: [{name, type}], rows (preview, lists in
    column order), row_count, truncated, truncated_by ("rows", "bytes" or None), duration_ms,
    snapshot_ids: [{table, snapshot_id}], result_sha256, engine, env, workspace}``. Errors are
    ``InvalidInput`` (``sql_error`` with line/column, ``sql_not_allowed``, ``engine_unavailable``,
    ``query_timeout``, ``timeout_too_long``), recorded too but for a refused timeout, and ``RateLimited``
    (a cap of running queries; not recorded). ``timeout_s`` None: the admin's maximum."""
    principal.require(Action.QUERY)
    _check_args(sql, engine, env, limit_preview)
    timeout = check_timeout(ctx, timeout_s)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    with sql_pool.runtime(ctx).gate.admit(principal.name, ws_id, timeout):
        return _run_admitted(ctx, principal, ws_id, sql, engine, env, workspace, limit_preview, timeout, run_id)


def _run_admitted(ctx: Context, principal: Principal, ws_id: int, sql: str, engine: str, env: str, workspace: str,
                  limit_preview: int, timeout_s: float, run_id: str | None) -> dict[str, Any]:
    started_at = ctx.clock()
    t0 = time.perf_counter()
    try:
        if engine == "trino":
            check_read_only_trino(sql)
            result = _run_trino(ctx, principal, sql, env, workspace, limit_preview, timeout_s)
        else:
            check_read_only(sql)
            result = _run_duckdb(ctx, sql, env, workspace, limit_preview, timeout_s)
    except ServiceError as exc:
        _record(ctx, ws_id, env, principal, engine, sql, "failed", exc.message, started_at, t0, run_id=run_id)
        raise
    except Exception as exc:
        _record(ctx, ws_id, env, principal, engine, sql, "failed", f"internal error: {type(exc).__name__}",
                started_at, t0, run_id=run_id)
        raise
    duration_ms = (time.perf_counter() - t0) * 1000
    query_id = _record(ctx, ws_id, env, principal, engine, sql, "succeeded", None, started_at, t0,
                       rows=result["row_count"], snapshot_ids=result["snapshot_ids"],
                       result=(result["result_sha256"], result.pop("_size"), result.pop("_uri")), run_id=run_id,
                       duration_ms=duration_ms)
    try:
        sql_results.sweep(ctx, ws_id, keep=query_id)
    except Exception:  # a failed clean-up must not fail the query; the next one retries it
        log.exception("sweeping stored query results failed", extra={"workspace_id": ws_id})
    return {"query_id": query_id, **result, "duration_ms": round(duration_ms, 3), "engine": engine, "env": env,
            "workspace": workspace}


def _run_duckdb(ctx: Context, sql: str, env: str, workspace: str, limit_preview: int,
                timeout_s: float) -> dict[str, Any]:
    from lakehouse.lake import duck

    sink = _ResultSink(ctx, limit_preview)
    timer: threading.Timer | None = None
    interrupted = threading.Event()
    try:
        lake = duck.connect(catalog_for(ctx.settings), env, workspace=workspace, views=False, sandbox=True,
                            memory_limit_mb=ctx.settings.sql_memory_limit_mb,
                            temp_root=ctx.settings.home / "sql-tmp")
        try:
            if timeout_s:
                def _interrupt() -> None:
                    interrupted.set()
                    lake.con.interrupt()

                timer = threading.Timer(timeout_s, _interrupt)
                timer.daemon = True
                timer.start()
            try:
                lake.prepare(sql)
                reads = lake.reads(sql)
                cur = lake.con.execute(sql)
                columns = [{"name": d[0], "type": str(d[1])} for d in (cur.description or [])]
                reader = cur.to_arrow_reader(64 * 1024)
                sink.open(reader.schema)
                for batch in reader:
                    sink.write(batch)
            except duckdb.Error as exc:
                if interrupted.is_set():
                    raise InvalidInput(f"the query ran longer than {timeout_s:g} s and was stopped",
                                       code="query_timeout") from None
                raise sql_error(exc, sql) from None
        finally:
            if timer is not None:
                timer.cancel()
            lake.close()
        return sink.finish(columns, reads)
    finally:
        sink.discard()


def jsonable(value: Any) -> Any:
    """A value of a result row as JSON can carry it: decimals as strings (exact), times as ISO text,
    bytes as base64, NaN/±inf as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return b64encode(bytes(value)).decode()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):  # an Arrow map
            return {str(k): jsonable(v) for k, v in value}
        return [jsonable(v) for v in value]
    return str(value)
