"""Reads of runs for people (the API, the Control Room and the CLI) that the queue does not need: the
keyset listing, id prefixes, idempotency keys.

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, tuple_

from lakehouse.store.scope import visible
from lakehouse.store.tables import runs, workspaces


@dataclass(frozen=True)
class RunListRow:
    id: str
    workspace_id: int
    workspace: str  # the workspace's slug
    environment: str
    spec_slug: str
    git_sha: str
    status: str
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    labels: dict[str, str] | None


def list_runs(conn: Connection, workspace_ids: Collection[int] | None, *, limit: int, status: str | None = None,
              spec_slug: str | None = None, environment: str | None = None, workspace_id: int | None = None,
              since: datetime | None = None, until: datetime | None = None,
              before: tuple[datetime, str] | None = None) -> list[RunListRow]:
    """Visible runs, newest first, keyset-paginated by (created_at, id): ``before`` is the
    (created_at, id) of the last run of the previous page. ``since`` is inclusive, ``until`` not."""
    stmt = select(runs.c.id, runs.c.workspace_id, workspaces.c.slug.label("workspace"), runs.c.environment,
                  runs.c.spec_slug, runs.c.git_sha, runs.c.status, runs.c.created_by, runs.c.created_at,
                  runs.c.started_at, runs.c.finished_at, runs.c.error, runs.c.labels,
                  ).join(workspaces, workspaces.c.id == runs.c.workspace_id)
    stmt = visible(stmt, runs.c.workspace_id, workspace_ids)
    if workspace_id is not None:
        stmt = stmt.where(runs.c.workspace_id == workspace_id)
    if status:
        stmt = stmt.where(runs.c.status == status)
    if spec_slug:
        stmt = stmt.where(runs.c.spec_slug == spec_slug)
    if environment:
        stmt = stmt.where(runs.c.environment == environment)
    if since:
        stmt = stmt.where(runs.c.created_at >= since)
    if until:
        stmt = stmt.where(runs.c.created_at < until)
    if before:
        # a row-value comparison is one index range on both databases (an OR of two is not)
        anchor_ts = bindparam("anchor_ts", before[0], type_=runs.c.created_at.type)
        stmt = stmt.where(tuple_(runs.c.created_at, runs.c.id) < tuple_(anchor_ts, before[1]))
    stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return [_listed(r) for r in conn.execute(stmt).mappings()]


def _listed(r: Any) -> RunListRow:
    return RunListRow(id=r["id"], workspace_id=int(r["workspace_id"]), workspace=r["workspace"],
                      environment=r["environment"], spec_slug=r["spec_slug"], git_sha=r["git_sha"],
                      status=r["status"], created_by=r["created_by"], created_at=r["created_at"],
                      started_at=r["started_at"], finished_at=r["finished_at"], error=r["error"],
                      labels=r["labels"])


def id_by_idempotency_key(conn: Connection, workspace_id: int, key: str) -> str | None:
    """The run created in the workspace with this idempotency key."""
    found = conn.execute(select(runs.c.id).where(runs.c.workspace_id == workspace_id,
                                                 runs.c.idempotency_key == key)).scalar()
    return None if found is None else str(found)


def status_of(conn: Connection, run_id: str) -> str | None:
    found = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    return None if found is None else str(found)


def ids_by_prefix(conn: Connection, prefix: str, workspace_ids: Collection[int] | None, limit: int = 5) -> list[str]:
    """Run ids that start with ``prefix``, in visible workspaces only (LIKE 'prefix%': collation-proof)."""
    stmt = visible(select(runs.c.id).where(runs.c.id.startswith(prefix, autoescape=True)),
                   runs.c.workspace_id, workspace_ids)
    found: list[str] = list(conn.execute(stmt.order_by(runs.c.id).limit(limit)).scalars())
    return [str(i) for i in found]
