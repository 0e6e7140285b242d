"""The ``query`` phase type: a read-only SQL query over the lakehouse (DuckDB over Iceberg), its result
stored as a Parquet artifact with a preview, and recorded in the query history with the run's id."""

from __future__ import annotations

from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError


def run_query(ctx: PhaseContext) -> dict[str, Any]:
    from lakehouse.lake.blobstore import BlobStore
    from lakehouse.services import sql as sql_service
    from lakehouse.services.auth import Principal
    from lakehouse.services.context import open_context
    from lakehouse.services.errors import ServiceError
    from lakehouse.settings import Settings

    text = ctx.params.get("sql")
    if not isinstance(text, str) or not text.strip():
        raise PhaseError("params.sql must be a SQL query", retryable=False)
    settings = Settings()
    service = open_context(settings, pool_size=1)
    principal = Principal(name=f"{ctx.spec_slug or 'run'} (run {ctx.run_id[:8]})", role="analyst")
    try:
        result = sql_service.run_query(service, principal, text, env=ctx.environment,
                                       workspace=ctx.params.get("workspace", "default"),
                                       limit_preview=int(ctx.params.get("preview_rows", 20)), run_id=ctx.run_id)
    except ServiceError as exc:
        raise PhaseError(f"{exc.code}: {exc.message}", retryable=False) from None
    finally:
        service.db.dispose()
    summary = {"query_id": result["query_id"], "rows": result["row_count"], "columns": result["columns"],
               "snapshot_ids": result["snapshot_ids"], "duration_ms": result["duration_ms"],
               "result_sha256": result["result_sha256"]}
    if ctx.client is not None and result.get("result_sha256"):
        path = BlobStore(settings.artifacts_dir).path(result["result_sha256"])
        preview = [dict(zip([c["name"] for c in result["columns"]], row, strict=False)) for row in result["rows"]]
        ctx.add_artifact(ctx.params.get("name", "result.parquet"), path, "application/vnd.apache.parquet",
                         {**summary, "preview": sql_service.jsonable(preview)})
    ctx.log(f"query returned {result['row_count']} rows in {result['duration_ms']:.0f} ms", **{
        "rows": result["row_count"], "query_id": result["query_id"]})
    return {"outputs": {}, "query": sql_service.jsonable(summary),
            "lineage": {"inputs": sorted({r["table"] for r in result["snapshot_ids"]}), "outputs": []}}
