"""Statements of ``query_history`` and of the blobs that hold stored query results (services/sql.py and
services/sql_results.py keep the rules: what is recorded, retention, quota).

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, func, select, update

from lakehouse.store.scope import visible
from lakehouse.store.tables import artifacts, blob_owners, blob_uploads, query_history
from lakehouse.store.tables import blobs as blobs_table
from lakehouse.store.tables import workspaces as ws_table

_CHUNK = 500  # ids per IN (…): far below every driver's parameter limit
qh = query_history


@dataclass(frozen=True)
class QueryRow:
    id: int
    workspace_id: int
    workspace: str  # the workspace's slug
    environment: str
    user_name: str
    engine: str
    sql_text: str
    status: str
    error: str | None
    started_at: datetime
    duration_ms: float | None
    rows: int | None
    snapshot_ids: list[dict[str, Any]] | None
    result_sha256: str | None
    run_id: str | None
    result_bytes: int | None
    result_expired_at: datetime | None


@dataclass(frozen=True)
class StoredResult:
    query_id: int
    sha256: str
    size_bytes: int | None


def _row(r: Any) -> QueryRow:
    return QueryRow(
        id=int(r["id"]), workspace_id=int(r["workspace_id"]), workspace=r["workspace"], environment=r["environment"],
        user_name=r["user_name"], engine=r["engine"], sql_text=r["sql_text"], status=r["status"], error=r["error"],
        started_at=r["started_at"], duration_ms=r["duration_ms"], rows=r["rows"], snapshot_ids=r["snapshot_ids"],
        result_sha256=r["result_sha256"], run_id=r["run_id"], result_bytes=r["result_bytes"],
        result_expired_at=r["result_expired_at"])


# --- recording ----------------------------------------------------------------------------------

# stored results are blobs like artifacts: one statement registers both


def insert_query(conn: Connection, *, workspace_id: int, environment: str, user_name: str, engine: str,
                 sql_text: str, status: str, error: str | None, started_at: datetime, duration_ms: float,
                 rows: int | None, snapshot_ids: list[dict[str, Any]] | None, result_sha256: str | None,
                 result_bytes: int | None, run_id: str | None) -> int:
    """One row of the history; its id."""
    return int(conn.execute(qh.insert().values(
        workspace_id=workspace_id, environment=environment, user_name=user_name, engine=engine, sql_text=sql_text,
        status=status, error=error, started_at=started_at, duration_ms=duration_ms, rows=rows,
        snapshot_ids=snapshot_ids, result_sha256=result_sha256, run_id=run_id, result_bytes=result_bytes,
    ).returning(qh.c.id)).scalar_one())


# --- reading ------------------------------------------------------------------------------------

def _scoped(workspace_ids: Collection[int] | None) -> Select[Any]:
    stmt = select(qh, ws_table.c.slug.label("workspace")).join(ws_table, ws_table.c.id == qh.c.workspace_id)
    return visible(stmt, qh.c.workspace_id, workspace_ids)


def search(conn: Connection, workspace_ids: Collection[int] | None, *, limit: int, workspace_id: int | None = None,
           environment: str | None = None, text: str | None = None, user: str | None = None,
           status: str | None = None, before: int | None = None) -> list[QueryRow]:
    """Visible queries, newest first; ``text`` is a case-insensitive substring of the SQL; keyset
    pagination on the id (``before``)."""
    stmt = _scoped(workspace_ids)
    if workspace_id is not None:
        stmt = stmt.where(qh.c.workspace_id == workspace_id)
    if environment:
        stmt = stmt.where(qh.c.environment == environment)
    if text:
        stmt = stmt.where(func.lower(qh.c.sql_text).contains(text.lower(), autoescape=True))
    if user:
        stmt = stmt.where(qh.c.user_name == user)
    if status:
        stmt = stmt.where(qh.c.status == status)
    if before is not None:
        stmt = stmt.where(qh.c.id < before)
    stmt = stmt.order_by(qh.c.id.desc()).limit(limit)
    return [_row(r) for r in conn.execute(stmt).mappings()]


def get_visible(conn: Connection, workspace_ids: Collection[int] | None, query_id: int) -> QueryRow | None:
    row = conn.execute(_scoped(workspace_ids).where(qh.c.id == query_id)).mappings().first()
    return _row(row) if row is not None else None


# --- retention and quota ------------------------------------------------------------------------

def _live(workspace_id: int, keep: int | None) -> ColumnElement[bool]:
    """Stored, unexpired results of a workspace (but query ``keep``)."""
    live = and_(qh.c.workspace_id == workspace_id, qh.c.result_sha256.is_not(None), qh.c.result_expired_at.is_(None))
    return live if keep is None else and_(live, qh.c.id != keep)


def results_started_before(conn: Connection, workspace_id: int, cutoff: datetime, *,
                           keep: int | None = None) -> list[StoredResult]:
    rows = conn.execute(select(qh.c.id, qh.c.result_sha256, qh.c.result_bytes)
                        .where(_live(workspace_id, keep), qh.c.started_at < cutoff)).all()
    return [StoredResult(int(r[0]), str(r[1]), r[2]) for r in rows]


def live_result_bytes(conn: Connection, workspace_id: int) -> int:
    """The bytes of every live stored result of a workspace."""
    return int(conn.execute(select(func.coalesce(func.sum(qh.c.result_bytes), 0))
                            .where(_live(workspace_id, None))).scalar_one())


def oldest_results(conn: Connection, workspace_id: int, *, after: int, limit: int,
                   keep: int | None = None) -> list[StoredResult]:
    """Live stored results of a workspace in id order, from past ``after`` (keyset)."""
    rows = conn.execute(select(qh.c.id, qh.c.result_sha256, qh.c.result_bytes)
                        .where(_live(workspace_id, keep), qh.c.id > after).order_by(qh.c.id).limit(limit)).all()
    return [StoredResult(int(r[0]), str(r[1]), r[2]) for r in rows]


def expire_results(conn: Connection, query_ids: Iterable[int], now: datetime) -> None:
    for chunk in _chunks(sorted(query_ids)):
        conn.execute(update(qh).where(qh.c.id.in_(chunk)).values(result_expired_at=now))


def is_named(conn: Connection, sha256: str) -> bool:
    """Whether a live query result (any workspace) or an artifact still names this content, or an
    executor uploaded it (for a run, or as an account) and may register it next."""
    live = exists().where(qh.c.result_sha256 == sha256, qh.c.result_expired_at.is_(None))
    artifact = exists().where(artifacts.c.sha256 == sha256)
    uploaded = exists().where(blob_owners.c.sha256 == sha256, blob_owners.c.run_id.is_not(None)) \
        | exists().where(blob_uploads.c.sha256 == sha256)
    return bool(conn.execute(select(live | artifact | uploaded)).scalar())


def forget_blobs(conn: Connection, shas: Iterable[str]) -> None:
    """Deleted content is no one's any more: a later upload of the same bytes starts over."""
    for chunk in _chunks(shas):
        conn.execute(blob_owners.delete().where(blob_owners.c.sha256.in_(chunk)))
        conn.execute(blob_uploads.delete().where(blob_uploads.c.sha256.in_(chunk)))
        conn.execute(blobs_table.delete().where(blobs_table.c.sha256.in_(chunk)))


def _chunks(items: Iterable[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
