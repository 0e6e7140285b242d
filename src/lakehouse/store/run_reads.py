"""Reads of runs for people (the API, the Control Room and the CLI) that the queue does not need: the
keyset listings (newest first; by score), id prefixes, idempotency keys.

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, exists, select, tuple_, union_all

from lakehouse.store.scope import visible
from lakehouse.store.tables import run_scores, runs, workspaces

FAN_OUT_MAX = 64  # the score listing probes each workspace's score index apart up to this many workspaces


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


def _filtered(stmt: Select[Any], *, status: str | None, spec_slug: str | None, environment: str | None,
              workspace_id: int | None, since: datetime | None, until: datetime | None) -> Select[Any]:
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
    return stmt


def _listing() -> Select[Any]:
    return select(runs.c.id, runs.c.workspace_id, workspaces.c.slug.label("workspace"), runs.c.environment,
                  runs.c.spec_slug, runs.c.git_sha, runs.c.status, runs.c.created_by, runs.c.created_at,
                  runs.c.started_at, runs.c.finished_at, runs.c.error, runs.c.labels,
                  )


def list_runs(conn: Connection, workspace_ids: Collection[int] | None, *, limit: int, status: str | None = None,
              spec_slug: str | None = None, environment: str | None = None, workspace_id: int | None = None,
              since: datetime | None = None, until: datetime | None = None,
              before: tuple[datetime, str] | None = None, unscored: bool = False) -> list[RunListRow]:
    """Visible runs, newest first, keyset-paginated by (created_at, id): ``before`` is the
    (created_at, id) of the last run of the previous page. ``since`` is inclusive, ``until`` not.
    ``unscored``: only the runs without a score (the tail of the score listing)."""
    stmt = _listing().join(workspaces, workspaces.c.id == runs.c.workspace_id)
    stmt = visible(stmt, runs.c.workspace_id, workspace_ids)
    stmt = _filtered(stmt, status=status, spec_slug=spec_slug, environment=environment, workspace_id=workspace_id,
                     since=since, until=until)
    if unscored:  # an anti-join by the primary key of run_scores, one probe per run in created_at order
        stmt = stmt.where(~exists().where(run_scores.c.run_id == runs.c.id))
    if before:
        # a row-value comparison is one index range on both databases (an OR of two is not)
        anchor_ts = bindparam("anchor_ts", before[0], type_=runs.c.created_at.type)
        stmt = stmt.where(tuple_(runs.c.created_at, runs.c.id) < tuple_(anchor_ts, before[1]))
    stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return [_listed(r) for r in conn.execute(stmt).mappings()]


def list_runs_by_score(conn: Connection, workspace_ids: Collection[int] | None, *, limit: int,
                       descending: bool = False, after: tuple[float, str] | None = None, status: str | None = None,
                       spec_slug: str | None = None, environment: str | None = None,
                       workspace_id: int | None = None, since: datetime | None = None,
                       until: datetime | None = None) -> list[tuple[RunListRow, float]]:
    """Visible scored runs, worst first (``descending``: best first), keyset-paginated by (score,
    run id): ``after`` is the (score, run id) of the last run of the previous page. Runs without a
    score are not here (:func:`list_runs` with ``unscored`` lists them after).

    Index-friendly: each workspace's scores are walked in ix_run_scores_ws_score_run order (workspace,
    score, run id) and stopped after ``limit`` matches, then the per-workspace heads are merged, so a
    page costs about ``limit`` index entries per workspace, not a sort of every scored run."""
    if workspace_id is not None:
        ids: list[int] = [workspace_id] if workspace_ids is None or workspace_id in workspace_ids else []
    elif workspace_ids is None:
        every: list[Any] = list(conn.execute(select(workspaces.c.id).order_by(workspaces.c.id)).scalars())
        ids = [int(i) for i in every]
    else:
        ids = sorted(workspace_ids)
    if not ids:
        return []
    key = tuple_(run_scores.c.score, run_scores.c.run_id)
    order = ((run_scores.c.score.desc(), run_scores.c.run_id.desc()) if descending
             else (run_scores.c.score.asc(), run_scores.c.run_id.asc()))

    def head(ws: list[int]) -> Select[Any]:
        stmt = (select(run_scores.c.run_id, run_scores.c.score)
                .join(runs, runs.c.id == run_scores.c.run_id)
                .where(run_scores.c.workspace_id.in_(ws) if len(ws) > 1 else run_scores.c.workspace_id == ws[0]))
        stmt = visible(stmt, runs.c.workspace_id, workspace_ids)  # the same workspace as its score, checked again
        stmt = _filtered(stmt, status=status, spec_slug=spec_slug, environment=environment, workspace_id=None,
                         since=since, until=until)
        if after is not None:
            anchor = tuple_(bindparam(None, after[0], type_=run_scores.c.score.type), after[1])
            stmt = stmt.where(key < anchor if descending else key > anchor)
        return stmt.order_by(*order).limit(limit)

    groups = [[w] for w in ids] if len(ids) <= FAN_OUT_MAX else [ids]
    heads = [select(h.c.run_id, h.c.score) for h in (head(g).subquery() for g in groups)]
    merged = (heads[0] if len(heads) == 1 else union_all(*heads)).subquery("heads")
    outer = ((merged.c.score.desc(), merged.c.run_id.desc()) if descending
             else (merged.c.score.asc(), merged.c.run_id.asc()))
    stmt = (_listing().add_columns(merged.c.score.label("score"))
            .select_from(merged.join(runs, runs.c.id == merged.c.run_id)
                         .join(workspaces, workspaces.c.id == runs.c.workspace_id))
            .order_by(*outer).limit(limit))
    return [(_listed(r), float(r["score"])) for r in conn.execute(stmt).mappings()]


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
