"""The ``query`` phase type: a read-only SQL query over the lakehouse, run by the control plane as the
run's creator inside the run's workspace and environment (``POST /ops/runs/{run_id}/query``), its
result stored as a Parquet artifact with a preview and recorded in the query history with the run's id.

The worker holds no database, catalog or key for this: it only forwards the SQL under its lease.
"""

from __future__ import annotations

from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError


def run_query(ctx: PhaseContext) -> dict[str, Any]:
    from lakehouse.worker.client import ContractError, LeaseLostError

    text = ctx.params.get("sql")
    if not isinstance(text, str) or not text.strip():
        raise PhaseError("params.sql must be a SQL query", retryable=False)
    if ctx.client is None:
        raise PhaseError("query phases run through the control plane; this context has no server",
                         retryable=False)
    try:
        preview_rows = int(ctx.params.get("preview_rows", 20))
    except (TypeError, ValueError):
        raise PhaseError("params.preview_rows must be an integer", retryable=False) from None
    try:
        answer = ctx.client.phase_query(ctx.run_id, ctx.lease_token, text, preview_rows,
                                        str(ctx.params.get("name", "result.parquet")))
    except LeaseLostError:
        raise
    except ContractError as exc:
        raise PhaseError(f"{exc.code}: {exc.message}", retryable=exc.status >= 500 or exc.status == 429) from None
    summary = answer["query"]
    if answer.get("artifact"):
        ctx.artifacts.append(answer["artifact"])
    ctx.log(f"query returned {summary['rows']} rows in {summary['duration_ms']:.0f} ms as {answer['acting_as']}",
            rows=summary["rows"], query_id=summary["query_id"])
    return {"outputs": {}, "query": summary,
            "lineage": {"inputs": sorted({r["table"] for r in summary["snapshot_ids"]}), "outputs": []}}
