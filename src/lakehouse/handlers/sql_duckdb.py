"""The ``sql`` phase type: one read-only DuckDB query over the run's workspace and environment, in the
same sandbox as ``/api/sql`` (no file outside that environment's table folders, no extension
installs, configuration locked), its result stored as a Parquet artifact."""

from __future__ import annotations

import hashlib
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError


def run_sql(ctx: PhaseContext) -> dict[str, Any]:
    import duckdb

    from lakehouse.lake import duck
    from lakehouse.lake.catalog import check_env, check_workspace
    from lakehouse.services.errors import ServiceError
    from lakehouse.services.sql import check_read_only

    if ctx.params.get("connection"):  # a sql job's statement on its PostgreSQL connection
        from lakehouse.handlers.sql_source import run_on_connection

        return run_on_connection(ctx)
    sql = ctx.params.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise PhaseError("params.sql must be a SQL string", retryable=False)
    try:
        check_read_only(sql)
        workspace = check_workspace(ctx.workspace)
        check_env(ctx.environment)
    except ServiceError as exc:
        raise PhaseError(f"{exc.code}: {exc.message}", retryable=False) from None
    except ValueError as exc:
        raise PhaseError(f"bad run scope: {exc}", retryable=False) from None
    out = ctx.workdir / "result.parquet"
    lake = duck.connect(ctx.catalog, ctx.environment, workspace=workspace, views=False, sandbox=True)
    try:
        rel = lake.sql(sql)
        if rel is None:
            raise PhaseError("the SQL returned no result set", retryable=False)
        table = rel.to_arrow_table()
    except duckdb.Error as exc:
        raise PhaseError(f"SQL error: {exc}", retryable=False) from None
    finally:
        lake.close()
    import pyarrow.parquet as pq

    pq.write_table(table, out)
    rows_hash = hashlib.sha256()
    for batch in table.sort_by([(c, "ascending") for c in table.column_names]).to_batches():
        rows_hash.update(str(batch.to_pylist()).encode())
    meta = {"rows": table.num_rows, "columns": table.column_names,
            "preview": table.slice(0, 20).to_pylist()}
    art = ctx.add_artifact(ctx.params.get("name", "result.parquet"), out, "application/vnd.apache.parquet",
                           {k: v for k, v in meta.items() if k != "preview"} | {"preview": _jsonable(meta["preview"])})
    return {"outputs": {"result": {"rows": table.num_rows, "columns": table.column_names,
                                   "content_hash": rows_hash.hexdigest(), "artifact_sha256": art["sha256"]}}}


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in r.items()}
            for r in rows]
