"""``query`` phases run on the control plane, as the run's creator, inside the run's workspace.

The executor holding the lease asks the server to run the phase's SQL (``POST
/ops/runs/{run_id}/query``): the worker needs no metadata database, catalog or other workspace, and
the query sees exactly what its creator may see — the same sandbox, roles, caps and history as
``/api/sql``, on the same SQL pool (never on the threads that serve the executor contract). The
result is registered as the phase's artifact in the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import artifacts, lease_scope, runs, sql, sql_pool
from lakehouse.services.context import Context


@dataclass(frozen=True)
class _Lease:
    run_id: str
    phase: str
    workspace: str
    environment: str
    creator: Principal


async def run_for_lease(ctx: Context, principal: Principal, run_id: str, lease_token: str, text: str,
                        preview_rows: int = 20, name: str = "result.parquet") -> dict[str, Any]:
    lease = await run_in_threadpool(_check_lease, ctx, principal, run_id, lease_token)
    result = await sql_pool.runtime(ctx).run(sql.run_query, ctx, lease.creator, text, "duckdb", lease.environment,
                                             lease.workspace, preview_rows, run_id=run_id)
    return await run_in_threadpool(_finish, ctx, principal, lease, result, name)


def _check_lease(ctx: Context, principal: Principal, run_id: str, lease_token: str) -> _Lease:
    run, phase = lease_scope.held_lease(ctx, principal, run_id, lease_token)
    slug = runs.get_run(ctx, run_id, principal)["workspace"]
    creator = lease_scope.acting_as(ctx, run["created_by"] or "", run["workspace_id"], Action.QUERY)
    return _Lease(run_id, phase["name"], slug, run["environment"], creator)


def _finish(ctx: Context, principal: Principal, lease: _Lease, result: dict[str, Any], name: str) -> dict[str, Any]:
    summary = {"query_id": result["query_id"], "rows": result["row_count"], "columns": result["columns"],
               "snapshot_ids": result["snapshot_ids"], "duration_ms": result["duration_ms"],
               "result_sha256": result["result_sha256"]}
    artifact = None
    if result.get("result_sha256"):
        preview = [dict(zip([c["name"] for c in result["columns"]], row, strict=False)) for row in result["rows"]]
        size = artifacts.adopt_local(ctx, result["result_sha256"])  # into the artifact store (S3 too)
        artifact, _ = artifacts.register(ctx, {
            "run_id": lease.run_id, "phase": lease.phase, "name": name, "sha256": result["result_sha256"],
            "size_bytes": size, "media_type": "application/vnd.apache.parquet",
            "metadata": {**sql.jsonable(summary), "preview": sql.jsonable(preview)}}, principal)
    return {"query": sql.jsonable(summary), "artifact": artifact, "acting_as": lease.creator.name,
            "workspace": lease.workspace, "environment": lease.environment}
