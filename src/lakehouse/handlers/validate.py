"""The ``validate`` phase: the spec's data-quality checks on the staged outputs (published tables for what
is not staged); a failed blocking check stops the run before publish."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from lakehouse.handlers import dq, staging
from lakehouse.handlers.pipeline_common import (
    _catalog,
    _scope,
    _settings,
    _spec,
    _staged,
    _table,
)
from lakehouse.worker.context import PhaseContext, PhaseError


def validate(ctx: PhaseContext) -> dict[str, Any]:
    """Run the spec's checks on the staged outputs (published tables for what is not staged)."""
    import duckdb

    from lakehouse.lake import tables as lake_tables

    spec = _spec(ctx)
    settings = _settings(ctx)
    ws = _scope(ctx)
    catalog = _catalog(ctx)
    staged = _staged(ctx, settings)
    data: dict[str, pa.Table] = {}
    published: dict[str, int | None] = {}
    for table in sorted({c["table"] for c in spec.get("checks") or []} |
                        {c["to"] for c in spec.get("checks") or [] if c.get("to")}):
        layer, name = _table(table)
        exists = lake_tables.table_exists(catalog, layer, ctx.environment, name, ws)
        published[table] = lake_tables.row_count(
            lake_tables.load(catalog, layer, ctx.environment, name, ws).metadata) if exists else None
        if table in staged:
            data[table] = staging.read(settings, staged[table]["staged"], ctx)
        elif exists:
            data[table] = lake_tables.read_table(catalog, layer, ctx.environment, name, workspace=ws)
    results = []
    con = duckdb.connect()
    try:
        for check in spec.get("checks") or []:
            ctx.check()
            r = dq.run_check(con, check, data, published)
            if check["type"] == "row_count" and check["table"].startswith("bronze.") and check["table"] in staged:
                grown = {check["table"]: _grown(data[check["table"]], published.get(check["table"]))}
                r = dq.run_check(con, check, grown, published)
            results.append(r)
            ctx.log(f"{'✔' if r['passed'] else '✖'} {r['type']} on {r['table']}: {r['message']}",
                    level="info" if r["passed"] else ("error" if r["severity"] == "error" else "warning"),
                    type_="DQ_RESULT", result=r)
    finally:
        con.close()
    for table, entry in sorted(staged.items()):
        drift = entry.get("drift") or {}
        if any(drift.values()):  # drift within policy (beyond it, ingest already failed)
            changes = "; ".join(f"{k}: {', '.join(v)}" for k, v in drift.items() if v)
            r = {"table": table, "type": "schema_drift", "severity": "warn", "passed": True, "observed": drift,
                 "message": f"schema changed at the source, allowed by the drift policy ({changes})", "check": {}}
            results.append(r)
            ctx.log(f"✔ schema_drift on {table}: {r['message']}", level="warning", type_="DQ_RESULT", result=r)
    path = ctx.workdir / "dq_results.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    if ctx.client is not None:
        ctx.add_artifact("dq_results.json", path, "application/json",
                         {"checks": len(results), "failed": sum(not r["passed"] for r in results)})
    blocking = [r for r in results if not r["passed"] and r["severity"] == "error"]
    if blocking:
        summary = "; ".join(f"{r['type']} on {r['table']}: {r['message']}" for r in blocking[:5])
        raise PhaseError(f"{len(blocking)} blocking data-quality check(s) failed: {summary}", retryable=False)
    return {"outputs": {}, "dq": {"checks": len(results), "passed": sum(r["passed"] for r in results),
                                  "warnings": sum(not r["passed"] for r in results)}}


def _grown(batch: pa.Table, published: int | None) -> pa.Table:
    """A stand-in with the row count bronze will have after the append (row-count checks on bronze
    judge the table, not the increment)."""
    total = batch.num_rows + (published or 0)
    return pa.table({"n": pa.nulls(total, pa.int8())})


# --- publish --------------------------------------------------------------------------------------

