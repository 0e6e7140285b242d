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
import re
import threading
import time
from base64 import b64encode
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import orjson
import pyarrow as pa

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake.blobstore import BlobStore
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import sql_pool, sql_results, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, NotFound, ServiceError
from lakehouse.services.sql_results import ResultSink as _ResultSink
from lakehouse.store import artifacts as blob_store
from lakehouse.store import sql_history as history
from lakehouse.store.sql_history import QueryRow

log = logging.getLogger("lakehouse.sql")

ENGINES = ("duckdb", "trino")
MAX_PREVIEW = 10_000
MAX_SQL_CHARS = 1_000_000
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
_EXPLAIN_RE = re.compile(r"^\s*EXPLAIN\s+(?:ANALYZE\s+)?(.*)$", re.IGNORECASE | re.DOTALL)


# --- statement checks ---------------------------------------------------------------------------


def check_read_only(sql: str) -> str:
    """The kind of an allowed statement (``select`` or ``explain``); raises ``InvalidInput``
    (``sql_error`` for a syntax error, ``sql_not_allowed`` for anything but one read-only statement)."""
    if not sql or not sql.strip():
        raise InvalidInput("the query is empty", code="sql_not_allowed")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(f"the query is longer than {MAX_SQL_CHARS} characters", code="sql_not_allowed")
    con = duckdb.connect()
    try:
        statements = _statements(con, sql)
        if not statements:
            raise InvalidInput("the query has no statement", code="sql_not_allowed")
        if len(statements) > 1:
            raise InvalidInput(f"one statement at a time: the query has {len(statements)}",
                               code="sql_not_allowed", details={"statements": len(statements)})
        stmt = statements[0]
        kind = stmt.type.name
        if kind == "EXPLAIN":
            m = _EXPLAIN_RE.match(stmt.query)
            inner = _statements(con, m.group(1)) if m else []
            if len(inner) == 1 and inner[0].type.name == "SELECT" and m and _serializable(con, m.group(1)):
                return "explain"
        elif kind == "SELECT" and _serializable(con, sql):  # the text as written: PRAGMA x reads as SELECT
            return "select"
        raise InvalidInput(f"only read-only queries (SELECT, WITH, VALUES, SHOW, DESCRIBE, EXPLAIN) may run "
                           f"here, not {_verb(stmt.query, kind)}", code="sql_not_allowed",
                           details={"statement": kind.lower()})
    finally:
        con.close()


def _statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(con.extract_statements(sql))
    except duckdb.Error as exc:
        raise sql_error(exc, sql) from None


def _serializable(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """A real SELECT tree (``PRAGMA x`` is typed SELECT but is not one)."""
    row = con.execute("SELECT json_extract(json_serialize_sql(?), '$.error')::BOOLEAN", [sql]).fetchone()
    return bool(row is not None and row[0] is False)


def _verb(sql: str, kind: str) -> str:
    words = re.sub(r"(--[^\n]*|/\*.*?\*/)", " ", sql, flags=re.DOTALL).split()
    return words[0].upper() if words else kind


# --- errors -------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"LINE (\d+): ([^\n]*)\n( *)\^")


def sql_error(exc: BaseException, sql: str) -> InvalidInput:
    """A DuckDB error as ``InvalidInput(code="sql_error")`` with ``details={"line", "column"}`` (1-based)
    when DuckDB gives a position; the message is DuckDB's, without its context lines."""
    text = str(exc)
    message, _, _ = text.partition("\n\nLINE ")
    message = _our_hints(" ".join(line.strip() for line in message.strip().splitlines() if line.strip()))
    details: dict[str, Any] = {"error_type": message.split(":", 1)[0] if ":" in message else type(exc).__name__}
    pos = error_position(text, sql)
    if pos is not None:
        details["line"], details["column"] = pos
    return InvalidInput(message or "the query failed", code="sql_error", details=details)


_INSTALL_RE = re.compile(r"\s*Please try installing and loading the (\w+) extension.*$")


def _our_hints(message: str) -> str:
    """DuckDB's advice to ``INSTALL``/``LOAD`` an extension points at what a lakehouse user may not do."""
    m = _INSTALL_RE.search(message)
    if m is None:
        return message
    return (message[:m.start()].rstrip() + f" The {m.group(1)} extension is not available to lakehouse queries;"
            " tables are queried as layer.table (see the Catalog).")


def error_position(message: str, sql: str) -> tuple[int, int] | None:
    """(line, column), 1-based, from DuckDB's ``LINE n: …`` context and its caret."""
    lines = sql.split("\n")
    m = _LINE_RE.search(message)
    if m is None:
        if "at end of input" in message:
            stripped = sql.rstrip()
            last = stripped.split("\n")
            return len(last), len(last[-1]) + 1
        return None
    line = int(m.group(1))
    snippet = m.group(2)
    caret = len(m.group(3)) - len(f"LINE {m.group(1)}: ")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if snippet.startswith("..."):  # DuckDB shortened a long line around the error
        visible = snippet[3:]
        tail = visible.endswith("...")
        if tail:
            visible = visible[:-3]
        start = text.find(visible) if tail else len(text) - len(visible)
        if start < 0:
            start = 0
        return line, start + caret - 3 + 1
    return line, max(caret, 0) + 1


# --- running ------------------------------------------------------------------------------------


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


# --- trino --------------------------------------------------------------------------------------

_TRINO_FIRST = {"SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE", "TABLE", "EXPLAIN"}
_TRINO_WRITES = {"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "GRANT", "REVOKE",
                 "CALL", "SET", "RESET", "USE", "PREPARE", "EXECUTE", "DEALLOCATE", "COMMENT", "COMMIT",
                 "ROLLBACK", "START", "REFRESH", "DENY", "ANALYZE"}


def check_read_only_trino(sql: str) -> None:
    """Trino SQL is not DuckDB SQL, so this check is lexical: one statement (``;`` outside strings and
    comments only at the end) that starts with SELECT/WITH/VALUES/SHOW/DESCRIBE/TABLE/EXPLAIN (not
    EXPLAIN ANALYZE of a write) and has no write keyword. The Trino user should be read-only too."""
    if not sql or not sql.strip():
        raise InvalidInput("the query is empty", code="sql_not_allowed")
    tokens = duckdb.tokenize(sql)
    words = [(sql[start:(tokens[i + 1][0] if i + 1 < len(tokens) else len(sql))].strip(), kind)
             for i, (start, kind) in enumerate(tokens)]
    while words and words[-1][0] == ";":
        words.pop()
    if not words:
        raise InvalidInput("the query has no statement", code="sql_not_allowed")
    if any(w == ";" or w.startswith(";") for w, _ in words):
        raise InvalidInput("one statement at a time", code="sql_not_allowed")
    first = words[0][0].upper()
    keywords = {w.upper() for w, kind in words if kind == duckdb.token_type.keyword}
    explain_analyze = first == "EXPLAIN" and len(words) > 1 and words[1][0].upper() == "ANALYZE"
    writes = set() if first in ("SHOW", "DESCRIBE") else _TRINO_WRITES - ({"ANALYZE"} if explain_analyze else set())
    if first not in _TRINO_FIRST or keywords & writes:
        raise InvalidInput(f"only read-only queries may run here, not {first}", code="sql_not_allowed")


def _trino_connection(ctx: Context, principal: Principal, workspace: str, env: str
                      ) -> tuple[dict[str, Any], dict[str, str]]:
    from lakehouse.services import connections

    try:
        found = [c for c in connections.list_connections(ctx, principal, environment=env)
                 if c["type"] == "trino" and c["workspace"] == workspace]
    except ServiceError:
        found = []
    if not found:
        raise InvalidInput(f"the trino engine needs a Trino connection in workspace {workspace!r}, environment "
                           f"{env!r}, and none is configured: add one (type trino) or use engine duckdb",
                           code="engine_unavailable")
    return connections.resolve(ctx, principal, int(found[0]["id"]))


def _run_trino(ctx: Context, principal: Principal, sql: str, env: str, workspace: str, limit_preview: int,
               timeout_s: float) -> dict[str, Any]:
    """Run the query on a configured Trino (tables are ``<catalog>.<namespace>.<table>`` there, e.g.
    ``iceberg.bronze_dev.account_move``)."""
    config, secrets = _trino_connection(ctx, principal, workspace, env)
    try:
        import trino
        from trino.exceptions import TrinoQueryError, TrinoUserError
    except ImportError:
        raise InvalidInput("the trino engine needs the Trino client: pip install 'lakehouse[trino]'",
                           code="engine_unavailable") from None
    user, password = config.get("user", "lakehouse"), secrets.get("password")
    if config.get("read_only_user") and principal.role in ("analyst", "viewer"):  # analysts query read-only
        user, password = config["read_only_user"], secrets.get("read_only_password")
    auth = trino.auth.BasicAuthentication(user, password) if password else None
    sink = _ResultSink(ctx, limit_preview)
    try:
        conn = trino.dbapi.connect(
            host=config["host"], port=int(config.get("port", 8080)), user=user,
            catalog=config.get("catalog", "iceberg"), http_scheme=config.get("http_scheme", "http"), auth=auth,
            request_timeout=timeout_s or 300.0,
            session_properties={"query_max_run_time": f"{int(timeout_s)}s"} if timeout_s else None)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            columns = [{"name": d[0], "type": str(d[1])} for d in (cur.description or [])]
            schema = pa.schema([(c["name"], _arrow_type(c["type"])) for c in columns])
            sink.open(schema)
            while rows := cur.fetchmany(10_000):
                sink.write(_batch(schema, rows))
        except TrinoUserError as exc:
            details: dict[str, Any] = {"error_type": exc.error_name}
            if exc.error_location:
                details["line"], details["column"] = exc.error_location
            raise InvalidInput(exc.message, code="sql_error", details=details) from None
        except TrinoQueryError as exc:
            raise InvalidInput(exc.message, code="sql_error", details={"error_type": exc.error_name}) from None
        except (OSError, trino.exceptions.HttpError, trino.exceptions.TrinoConnectionError) as exc:
            raise InvalidInput(f"cannot reach Trino at {config['host']}:{config.get('port', 8080)}: "
                               f"{type(exc).__name__}", code="engine_unavailable") from None
        finally:
            conn.close()
        return sink.finish(columns, [])
    finally:
        sink.discard()


def _arrow_type(trino_type: str) -> pa.DataType:
    t = trino_type.lower()
    simple = {"boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(),
              "bigint": pa.int64(), "real": pa.float32(), "double": pa.float64(), "date": pa.date32(),
              "varbinary": pa.binary()}
    if t in simple:
        return simple[t]
    if m := re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    if t.startswith("timestamp"):
        return pa.timestamp("us", tz="UTC" if "with time zone" in t else None)
    if t.startswith("time") and "with time zone" not in t:
        return pa.time64("us")
    return pa.string()  # varchar, char, json, uuid, arrays, maps, rows, intervals: as text


def _batch(schema: pa.Schema, rows: list[list[Any]]) -> pa.RecordBatch:
    arrays = []
    for i, field in enumerate(schema):
        values = [r[i] for r in rows]
        if pa.types.is_string(field.type):
            values = [v if v is None or isinstance(v, str) else (orjson.dumps(v, default=str).decode()
                                                                 if isinstance(v, list | dict) else str(v))
                      for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _record(ctx: Context, ws_id: int, env: str, principal: Principal, engine: str, sql: str, status: str,
            error: str | None, started_at: datetime, t0: float, *, rows: int | None = None,
            snapshot_ids: list[dict[str, Any]] | None = None, result: tuple[str, int, str] | None = None,
            run_id: str | None = None, duration_ms: float | None = None) -> int:
    if duration_ms is None:
        duration_ms = (time.perf_counter() - t0) * 1000
    with ctx.db.write() as conn:
        if result is not None:
            blob_store.remember_blob(conn, result[0], result[1], result[2], ctx.clock())  # one blobs registry
            blob_store.own(conn, ws_id, result[0], None, ctx.clock())  # produced here: this workspace's only
        return history.insert_query(
            conn, workspace_id=ws_id, environment=env, user_name=principal.name, engine=engine, sql_text=sql,
            status=status, error=error, started_at=started_at, duration_ms=duration_ms, rows=rows,
            snapshot_ids=snapshot_ids, result_sha256=result[0] if result else None,
            result_bytes=result[1] if result else None, run_id=run_id)


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


# --- history ------------------------------------------------------------------------------------


def _render(row: QueryRow) -> dict[str, Any]:
    return {"query_id": row.id, "workspace": row.workspace, "env": row.environment, "user": row.user_name,
            "engine": row.engine, "sql": row.sql_text, "status": row.status, "error": row.error,
            "started_at": row.started_at, "duration_ms": row.duration_ms, "rows": row.rows,
            "snapshot_ids": row.snapshot_ids or [], "result_sha256": row.result_sha256, "run_id": row.run_id,
            "result_expired": row.result_expired_at is not None}


def search_history(ctx: Context, principal: Principal, q: str | None = None, user: str | None = None,
                   status: str | None = None, limit: int = 50, before: int | None = None, *,
                   workspace: str | None = None, env: str | None = None) -> list[dict[str, Any]]:
    """Queries of the principal's workspaces, newest first; ``q`` is a case-insensitive substring of the
    SQL text; keyset pagination: pass the last ``query_id`` as ``before``."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", code="invalid")
    ws_id = workspaces.resolve_for(ctx, principal, workspace) if workspace else None
    with ctx.db.read() as conn:
        rows = history.search(conn, principal.workspace_ids, limit=limit, workspace_id=ws_id, environment=env,
                              text=q, user=user, status=status, before=before)
    return [_render(r) for r in rows]


def _visible_query(ctx: Context, principal: Principal, query_id: int) -> QueryRow:
    with ctx.db.read() as conn:
        row = history.get_visible(conn, principal.workspace_ids, query_id)
    if row is None:
        raise NotFound(f"query {query_id} not found", code="query_not_found")
    return row


def get_query(ctx: Context, principal: Principal, query_id: int) -> dict[str, Any]:
    return _render(_visible_query(ctx, principal, query_id))


def result_file(ctx: Context, principal: Principal, query_id: int) -> Path:
    """The Parquet file of a query's full result: 404 when the query is not visible, failed or its result
    expired; 403 unless the principal may query in the query's workspace (a viewer sees the history
    row, not the data)."""
    row = _visible_query(ctx, principal, query_id)
    principal.require_in(Action.QUERY, row.workspace_id)
    if row.result_expired_at is not None:
        raise NotFound(f"the result of query {query_id} was deleted on {row.result_expired_at:%Y-%m-%d} "
                       f"(retention or workspace quota); run the query again", code="result_expired")
    store = BlobStore(ctx.settings.artifacts_dir)
    if not row.result_sha256 or not store.exists(row.result_sha256):
        raise NotFound(f"query {query_id} has no stored result", code="result_not_found")
    return store.path(row.result_sha256)
