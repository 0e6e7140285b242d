"""Query history: every query attempt recorded (its result blob owned by the workspace that ran it),
searched, read back, and a stored result's file for download."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.lake.blobstore import BlobStore
from lakehouse.services import workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.store import artifacts as blob_store
from lakehouse.store import sql_history as history
from lakehouse.store.sql_history import QueryRow


def record(ctx: Context, ws_id: int, env: str, principal: Principal, engine: str, sql: str, status: str,
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
