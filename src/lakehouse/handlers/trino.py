"""The ``trino`` phase type: one read-only query on a Trino cluster, its result stored as a Parquet
artifact.

Params: ``sql`` (one read-only statement, checked like ``/api/sql --engine trino``), ``connection``
(the name of a connection of type ``trino`` that the run declared in ``input_manifest.connections``),
``preview_rows`` (default 20), ``page_rows`` (rows per fetch, default 10,000), ``max_scan_bytes``
(a cap below the worker's ``LAKEHOUSE_TRINO_MAX_SCAN_BYTES``; it can lower it, never raise it),
``allow_unknown_cost`` (run even when Trino cannot estimate the input; default false when capped),
``name`` (the artifact's name, default ``result.parquet``).

The phase:

1. fetches the connection for its lease (secrets stay in memory) and connects as the connection's
   ``read_only_user`` when one is set (a Trino user with read-only access control), else as ``user``;
2. asks ``EXPLAIN (TYPE IO, FORMAT JSON)`` for the cost estimate — the tables read with their
   estimated rows and bytes — records it in the run's trail before running, and refuses the query
   (not retried) when the estimate is over the cap;
3. runs the query and pages through the result (Trino's ``nextUri`` protocol), reporting progress
   (rows, Trino's progress percentage) and checking for cancellation between pages: a cancelled run,
   a lost lease or a timeout cancels the Trino query (``DELETE`` on its ``nextUri``);
4. writes the rows to Parquet and registers it as the phase's artifact with a preview.

Its output manifest carries ``query`` (Trino's query id, the SQL, rows, columns, the estimate,
duration, the Trino user) — the phase's query history, kept with the run — and ``lineage.inputs``
(the tables the estimate named, as ``layer.table`` when they are ours).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

from lakehouse.worker.context import PhaseCancelled, PhaseContext, PhaseError

PARQUET = "application/vnd.apache.parquet"
_NS_RE = re.compile(r"^(?:[a-z0-9_-]+__)?(bronze|silver|gold)_(dev|stage|prod)$")


def cost_estimate(plan: str) -> dict[str, Any]:
    """``{bytes, rows, tables: [{table, rows, bytes}]}`` from ``EXPLAIN (TYPE IO, FORMAT JSON)``'s
    document; a value Trino could not estimate (NaN) makes the total ``None``."""
    doc = json.loads(plan)
    tables = []
    total_bytes: float | None = 0.0
    total_rows: float | None = 0.0
    for info in doc.get("inputTableColumnInfos") or []:
        t = info.get("table") or {}
        st = t.get("schemaTable") or {}
        name = ".".join(p for p in (t.get("catalog"), st.get("schema"), st.get("table")) if p)
        est = info.get("estimate") or {}
        size, rows = _number(est.get("outputSizeInBytes")), _number(est.get("outputRowCount"))
        tables.append({"table": name, "rows": rows, "bytes": size})
        total_bytes = None if total_bytes is None or size is None else total_bytes + size
        total_rows = None if total_rows is None or rows is None else total_rows + rows
    return {"bytes": total_bytes, "rows": total_rows, "tables": tables}


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def our_table(trino_name: str) -> str | None:
    """``iceberg.gold_dev.revenue`` → ``gold.revenue`` (our layer.table), else None."""
    parts = trino_name.split(".")
    if len(parts) != 3:
        return None
    m = _NS_RE.match(parts[1])
    return f"{m.group(1)}.{parts[2]}" if m else None


def _cap(ctx: PhaseContext) -> int | None:
    """The scan cap in bytes: the worker's setting, lowered (never raised) by the phase's params."""
    setting = int(getattr(ctx.settings, "trino_max_scan_bytes", 0) or 0)
    asked = ctx.params.get("max_scan_bytes")
    if asked is not None:
        if isinstance(asked, bool) or not isinstance(asked, int) or asked <= 0:
            raise PhaseError("params.max_scan_bytes must be a positive integer", retryable=False)
        return min(int(asked), setting) if setting else int(asked)
    return setting or None


def _params(ctx: PhaseContext) -> tuple[str, str, int, int]:
    from lakehouse.services.errors import InvalidInput
    from lakehouse.services.sql import check_read_only_trino

    text, name = ctx.params.get("sql"), ctx.params.get("connection")
    if not isinstance(text, str) or not text.strip():
        raise PhaseError("params.sql must be a SQL query", retryable=False)
    if not isinstance(name, str) or not name:
        raise PhaseError("params.connection must name a Trino connection the run declared", retryable=False)
    try:
        check_read_only_trino(text)
        preview = int(ctx.params.get("preview_rows", 20))
        page = int(ctx.params.get("page_rows", 10_000))
    except InvalidInput as exc:
        raise PhaseError(f"{exc.code}: {exc.message}", retryable=False) from None
    except (TypeError, ValueError):
        raise PhaseError("params.preview_rows and params.page_rows must be integers", retryable=False) from None
    if not 0 <= preview <= 1000 or not 1 <= page <= 1_000_000:
        raise PhaseError("params.preview_rows is 0-1000 and params.page_rows 1-1,000,000", retryable=False)
    return text.strip().rstrip(";"), name, preview, page


def lease_trino(ctx: PhaseContext, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(config, secrets)`` of the Trino connection ``name`` handed to this lease (the run must have
    declared it)."""
    conn = ctx.leased_connection(name, "trino")
    return dict(conn.get("config") or {}), dict(conn.get("secrets") or {})


def _connect(ctx: PhaseContext, name: str) -> tuple[Any, str]:
    try:
        import trino
    except ImportError:
        raise PhaseError("the trino phase needs the Trino client: pip install 'lakehouse[trino]'",
                         retryable=False) from None
    config, secrets = lease_trino(ctx, name)
    user = str(config.get("read_only_user") or config.get("user") or "lakehouse")
    password = secrets.get("read_only_password") if config.get("read_only_user") else secrets.get("password")
    auth = trino.auth.BasicAuthentication(user, password) if password else None
    connection = trino.dbapi.connect(
        host=config["host"], port=int(config.get("port", 8080)), user=user,
        catalog=config.get("catalog", "iceberg"), http_scheme=config.get("http_scheme", "http"), auth=auth,
        source=f"lakehouse/{ctx.run_id}/{ctx.phase}", request_timeout=60.0)
    return connection, user


def run_trino(ctx: PhaseContext) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from trino.exceptions import HttpError, TrinoConnectionError, TrinoQueryError

    from lakehouse.services.sql import jsonable
    from lakehouse.services.sql_trino import arrow_type as _arrow_type
    from lakehouse.services.sql_trino import batch as _batch

    sql, name, preview_rows, page_rows = _params(ctx)
    cap = _cap(ctx)
    connection, user = _connect(ctx, name)
    cur = None
    current: list[Any] = []  # the running cursor, for the cancel watcher
    done = threading.Event()

    def watch() -> None:  # a cancel while the client waits inside execute()/fetch kills the Trino query now
        while not done.wait(0.05):
            if ctx.cancelled.is_set():
                if current:
                    current[-1].cancel()
                return

    watcher = threading.Thread(target=watch, name=f"trino-cancel-{ctx.run_id}", daemon=True)
    watcher.start()
    try:
        try:
            cur = connection.cursor()
            current.append(cur)
            cur.execute(f"EXPLAIN (TYPE IO, FORMAT JSON) {sql}")
            estimate = cost_estimate(str(cur.fetchall()[0][0]))
            ctx.log(f"cost estimate: {_size(estimate['bytes'])} from {len(estimate['tables'])} table(s)"
                    + (f", cap {_size(cap)}" if cap else ""), estimate=estimate, cap_bytes=cap, user=user)
            if cap is not None:
                if estimate["bytes"] is None and not ctx.params.get("allow_unknown_cost"):
                    raise PhaseError("Trino cannot estimate this query's input and a scan cap is set; refusing "
                                     "(set params.allow_unknown_cost to run it anyway)", retryable=False)
                if estimate["bytes"] is not None and estimate["bytes"] > cap:
                    raise PhaseError(f"the query would read about {_size(estimate['bytes'])}, over the cap of "
                                     f"{_size(cap)}: refused before running", retryable=False)
            ctx.check()
            t0 = time.perf_counter()
            cur = connection.cursor()
            current.append(cur)
            cur.execute(sql)
            columns = [{"name": d[0], "type": str(d[1])} for d in (cur.description or [])]
            schema = pa.schema([(c["name"], _arrow_type(c["type"])) for c in columns])
            path = ctx.workdir / "result.parquet"
            rows = 0
            preview: list[list[Any]] = []
            with pq.ParquetWriter(path, schema) as writer:
                while True:
                    ctx.check()
                    page = cur.fetchmany(page_rows)
                    if not page:
                        break
                    writer.write_batch(_batch(schema, page))
                    if len(preview) < preview_rows:
                        preview += [list(r) for r in page[:preview_rows - len(preview)]]
                    rows += len(page)
                    stats = cur.stats or {}
                    pct = _number(stats.get("progressPercentage"))
                    ctx.progress(f"{rows:,} rows fetched", fraction=pct / 100 if pct is not None else None,
                                 rows=rows, trino_query_id=cur.query_id, state=stats.get("state"))
            duration_ms = (time.perf_counter() - t0) * 1000
        except PhaseCancelled:
            if cur is not None:
                cur.cancel()  # DELETE the query's nextUri: Trino stops it
            raise
        except TrinoQueryError as exc:
            if ctx.cancelled.is_set():  # the watcher cancelled it: Trino answers USER_CANCELED
                raise PhaseCancelled(ctx.cancel_reason or "phase cancelled") from None
            raise PhaseError(f"trino {exc.error_name}: {exc.message}", retryable=False) from None
        except (OSError, HttpError, TrinoConnectionError) as exc:
            raise PhaseError(f"cannot reach Trino: {type(exc).__name__}: {str(exc)[:200]}", retryable=True) from None
    finally:
        done.set()
        watcher.join()
        connection.close()
    query = {"trino_query_id": cur.query_id, "sql": sql, "user": user, "rows": rows, "columns": columns,
             "estimate": estimate, "cap_bytes": cap, "duration_ms": round(duration_ms, 3)}
    names = [c["name"] for c in columns]
    ctx.add_artifact(str(ctx.params.get("name", "result.parquet")), path, PARQUET, {
        **jsonable(query), "preview": jsonable([dict(zip(names, r, strict=False)) for r in preview])})
    ctx.log(f"trino query {cur.query_id} returned {rows:,} rows in {duration_ms:.0f} ms as {user}",
            trino_query_id=cur.query_id, rows=rows)
    inputs = sorted({t for t in (our_table(x["table"]) for x in estimate["tables"]) if t})
    return {"outputs": {}, "query": jsonable(query), "lineage": {"inputs": inputs, "outputs": []}}


def _size(n: float | None) -> str:
    if n is None:
        return "an unknown size"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
