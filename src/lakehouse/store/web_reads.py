"""The Control Room's read model: the statements behind the Overview, Runs, Executors and Audit pages
(web/queries.py shapes them for the templates). The runs listing itself is
:func:`lakehouse.store.run_reads.list_runs`, shared with the API.

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`) and
shaped to hit an index: runs by (workspace_id, created_at, id), phases by run, events by (run_id, seq).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)

from lakehouse.domain.states import PhaseStatus
from lakehouse.store.audit import AuditRow
from lakehouse.store.scope import visible
from lakehouse.store.tables import (
    artifacts,
    audit_log,
    executors,
    lineage_edges,
    phases,
    run_events,
    run_scores,
    runs,
    workspaces,
)
from lakehouse.store.types import UTCDateTime

Ids = Collection[int] | None  # the principal's workspace_ids (None: every workspace)


def _runs_of(stmt: Select[Any], workspace_ids: Ids) -> Select[Any]:
    return visible(stmt, runs.c.workspace_id, workspace_ids)


# --- the Runs page --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseCell:
    """One phase in a run's strip: its name, status and attempt (the service tells "retrying")."""
    run_id: str
    name: str
    status: str
    attempt: int


def phase_strips(conn: Connection, run_ids: Iterable[str]) -> list[PhaseCell]:
    """The phases of these runs, by run and phase order."""
    ids = list(run_ids)
    if not ids:
        return []
    rows = conn.execute(select(phases.c.run_id, phases.c.name, phases.c.status, phases.c.attempt)
                        .where(phases.c.run_id.in_(ids)).order_by(phases.c.run_id, phases.c.idx)).all()
    return [PhaseCell(run_id=r[0], name=r[1], status=r[2], attempt=int(r[3])) for r in rows]


def scores_of(conn: Connection, run_ids: Iterable[str]) -> dict[str, float]:
    """The stored scores of these runs (a run without one is absent)."""
    ids = list(run_ids)
    if not ids:
        return {}
    rows = conn.execute(select(run_scores.c.run_id, run_scores.c.score).where(run_scores.c.run_id.in_(ids))).all()
    return {str(r[0]): float(r[1]) for r in rows}


def spec_slugs(conn: Connection, workspace_ids: Ids, limit: int) -> list[str]:
    """Distinct pipelines of the visible runs without scanning them: a loose index scan over
    ix_runs_spec_created, one index probe per pipeline (a recursive CTE; SQLite and Postgres)."""
    def smallest(after: Any = None) -> Any:
        stmt = select(func.min(runs.c.spec_slug))
        if after is not None:
            stmt = stmt.where(runs.c.spec_slug > after)
        return _runs_of(stmt, workspace_ids).scalar_subquery()

    slugs = select(smallest().label("s"), literal(1).label("n")).cte("slugs", recursive=True)
    slugs = slugs.union_all(select(smallest(slugs.c.s), slugs.c.n + 1)
                            .where(slugs.c.s.is_not(None), slugs.c.n < limit))
    found: list[Any] = list(conn.execute(select(slugs.c.s).where(slugs.c.s.is_not(None))).scalars())
    return [str(slug) for slug in found]


def last_run_by_spec_status(conn: Connection, workspace_ids: Ids) -> list[tuple[str, str, datetime]]:
    """(pipeline, status, created_at of its newest run with that status) over the visible runs."""
    rows = conn.execute(_runs_of(select(runs.c.spec_slug, runs.c.status, func.max(runs.c.created_at)),
                                 workspace_ids).group_by(runs.c.spec_slug, runs.c.status)).all()
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


# --- the Overview ----------------------------------------------------------------------------------

def queued_phases(conn: Connection, workspace_ids: Ids, now: datetime, *, ready: bool) -> int:
    """Queued phases of visible runs that may be claimed now (``ready``) or wait out a backoff."""
    due = phases.c.available_at <= now if ready else phases.c.available_at > now
    stmt = (select(func.count()).select_from(phases.join(runs, runs.c.id == phases.c.run_id))
            .where(phases.c.status == PhaseStatus.QUEUED.value, due))
    return int(conn.execute(_runs_of(stmt, workspace_ids)).scalar_one())


def phase_outcomes(conn: Connection, workspace_ids: Ids, since: datetime, statuses: Collection[str],
                   sample: int) -> list[tuple[str, str, int]]:
    """(phase name, status, count) over the newest ``sample`` visible runs created since ``since``,
    for phases in ``statuses``."""
    recent = _runs_of(select(runs.c.id).where(runs.c.created_at >= since), workspace_ids) \
        .order_by(runs.c.created_at.desc()).limit(sample).subquery()
    rows = conn.execute(select(phases.c.name, phases.c.status, func.count())
                        .select_from(recent.join(phases, phases.c.run_id == recent.c.id))
                        .where(phases.c.status.in_(sorted(statuses)))
                        .group_by(phases.c.name, phases.c.status)).all()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def events_since(conn: Connection, workspace_ids: Ids, event_type: str, since: datetime) -> int:
    """How many events of this type visible runs logged since ``since``."""
    stmt = (select(func.count()).select_from(run_events.join(runs, runs.c.id == run_events.c.run_id))
            .where(run_events.c.type == event_type, run_events.c.ts >= since))
    return int(conn.execute(_runs_of(stmt, workspace_ids)).scalar_one())


def run_spans(conn: Connection, workspace_ids: Ids, since: datetime, status: str,
              sample: int) -> list[tuple[datetime, datetime]]:
    """(started_at, finished_at) of the newest ``sample`` visible runs with this status created since
    ``since`` that started."""
    stmt = _runs_of(select(runs.c.started_at, runs.c.finished_at)
                    .where(runs.c.created_at >= since, runs.c.status == status, runs.c.started_at.is_not(None)),
                    workspace_ids).order_by(runs.c.created_at.desc()).limit(sample)
    return [(r[0], r[1]) for r in conn.execute(stmt).all()]


def runs_per_hour(conn: Connection, workspace_ids: Ids, since: datetime) -> list[tuple[str, str, int]]:
    """(hour as 'YYYY-MM-DDTHH', status, count) of the visible runs created since ``since``."""
    if conn.dialect.name == "postgresql":
        bucket = func.date_trunc(literal_column("'hour'"), runs.c.created_at)
    else:
        bucket = func.strftime("%Y-%m-%dT%H:00:00", runs.c.created_at)
    rows: Any = conn.execute(_runs_of(select(bucket.label("h"), runs.c.status, func.count())
                                 .where(runs.c.created_at >= since), workspace_ids)
                        .group_by("h", runs.c.status)).all()
    return [((h if isinstance(h, str) else h.strftime("%Y-%m-%dT%H:%M:%S"))[:13], str(status), int(n))
            for h, status, n in rows]


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (PostgreSQL's ``percentile_disc``): the smallest value with at least ``q`` of the
    values at or below it. ``values`` sorted, not empty."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def duration_percentiles_per_hour(conn: Connection, workspace_ids: Ids, since: datetime,
                                  status: str) -> list[tuple[str, float, float, int]]:
    """(hour as 'YYYY-MM-DDTHH', p50, p95, runs) of the wall time (started → finished, seconds) of
    the visible runs with this status created since ``since``, by the hour they were created.
    One index range on ix_runs_status_created_id; PostgreSQL aggregates (percentile_disc), SQLite
    hands the spans over and they are ranked here, with the same nearest-rank definition."""
    where = (runs.c.created_at >= since, runs.c.status == status, runs.c.started_at.is_not(None),
             runs.c.finished_at.is_not(None))
    if conn.dialect.name == "postgresql":
        bucket = func.date_trunc(literal_column("'hour'"), runs.c.created_at, literal_column("'UTC'"))
        secs = func.date_part("epoch", runs.c.finished_at - runs.c.started_at)  # float8 seconds
        stmt = _runs_of(select(bucket.label("h"), func.percentile_disc(0.5).within_group(secs),
                               func.percentile_disc(0.95).within_group(secs), func.count()).where(*where),
                        workspace_ids).group_by("h")
        out = []
        rows: Any = conn.execute(stmt).all()
        for h, p50, p95, n in rows:
            out.append((h.astimezone(UTC).strftime("%Y-%m-%dT%H"), float(p50), float(p95), int(n)))
        return out
    spans: dict[str, list[float]] = {}
    found: Any = conn.execute(_runs_of(select(runs.c.created_at, runs.c.started_at, runs.c.finished_at)
                                       .where(*where), workspace_ids)).all()
    for created, started, finished in found:
        spans.setdefault(created.strftime("%Y-%m-%dT%H"), []).append((finished - started).total_seconds())
    return [(h, percentile(sorted(v), 0.5), percentile(sorted(v), 0.95), len(v)) for h, v in spans.items()]


QUEUE_LOOKBACK = timedelta(hours=1)  # a phase that waited longer before the window opened starts later on the chart


def queue_depth(conn: Connection, workspace_ids: Ids, since: datetime, step: timedelta, points: int,
                now: datetime) -> list[int]:
    """How many phases of visible runs were queued at ``since + k·step`` for k < ``points``, and at
    ``now`` (the last value, so ``points + 1`` values). A phase is queued at t when available_at ≤ t
    < the end of its wait: its claim (claimed_at) or, never claimed, its finish (cancelled while
    queued); one still queued has no end. A retried phase counts its latest wait only (the earlier
    ones are its attempts' history, not kept on the phase).

    depth(t) = #(waits begun at or before t) - #(waits ended at or before t): each wait adds +1 at the
    first sample at or after its start and -1 at the first at or after its end, and a running sum
    gives the depths. The waits are found through ix_phases_ws_claimable (workspace, status,
    available_at): those begun since ``since`` - QUEUE_LOOKBACK, and the phases queued now."""
    if workspace_ids is None:
        every: list[Any] = list(conn.execute(select(workspaces.c.id)).scalars())
        ids = [int(i) for i in every]
    else:
        ids = sorted(workspace_ids)
    if not ids:
        return [0] * (points + 1)
    start = phases.c.available_at
    ended = case((phases.c.claimed_at >= phases.c.available_at, phases.c.claimed_at),
                 else_=func.coalesce(phases.c.finished_at, phases.c.available_at))
    past = sorted(s.value for s in PhaseStatus if s not in (PhaseStatus.PENDING, PhaseStatus.QUEUED))
    waits = union_all(
        select(start.label("s"), ended.label("e")).where(
            phases.c.workspace_id.in_(ids), phases.c.status.in_(past),
            start >= since - QUEUE_LOOKBACK, start <= now),
        select(start.label("s"), null().label("e")).where(
            phases.c.workspace_id.in_(ids), phases.c.status == PhaseStatus.QUEUED.value, start <= now),
    ).subquery("waits")
    counts = [0] * (points + 2)
    step_s = int(step.total_seconds())  # whole seconds
    if conn.dialect.name == "postgresql":
        t0 = bindparam("t0", since, type_=UTCDateTime())

        def sample(col: Any) -> Any:  # the first sample at or after col (0 or less for col <= since)
            # float8 seconds: a whole multiple of the step divides exactly, anything else is far from it
            return func.ceil(func.date_part("epoch", col - t0) / step_s)

        # one pass over the waits: (start sample, end sample or NULL while still queued) → how many;
        # a wait ends at or before now (claims and finishes are in the past)
        grouped: Any = conn.execute(select(sample(waits.c.s).label("ks"), sample(waits.c.e).label("ke"),
                                           func.count()).group_by(literal_column("ks"), literal_column("ke"))).all()
        for k_s, k_e, n in grouped:
            counts[max(0, min(int(k_s), points))] += int(n)
            if k_e is not None:
                counts[max(0, min(int(k_e), points))] -= int(n)
    else:
        step_us = step_s * 1_000_000

        def index(t: datetime) -> int:
            us = (t - since) // timedelta(microseconds=1)
            return max(0, min(points, -(-us // step_us)))

        spans: Any = conn.execute(select(waits.c.s, waits.c.e)).all()
        for s, e in spans:
            counts[index(s)] += 1
            if e is not None and e <= now:
                counts[index(e)] -= 1
    depth, out = 0, []
    for k in range(points + 1):
        depth += counts[k]
        out.append(depth)
    return out


@dataclass(frozen=True)
class RunLine:
    """A run as the Overview lists it (failures, work in progress)."""
    id: str
    spec_slug: str
    environment: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def newest_runs(conn: Connection, workspace_ids: Ids, statuses: Collection[str], limit: int,
                since: datetime | None = None) -> list[RunLine]:
    """The newest visible runs in ``statuses`` (created since ``since``)."""
    stmt = select(runs.c.id, runs.c.spec_slug, runs.c.environment, runs.c.created_at, runs.c.started_at,
                  runs.c.finished_at, runs.c.error).where(runs.c.status.in_(sorted(statuses)))
    if since is not None:
        stmt = stmt.where(runs.c.created_at >= since)
    stmt = _runs_of(stmt, workspace_ids).order_by(runs.c.created_at.desc()).limit(limit)
    return [RunLine(id=r[0], spec_slug=r[1], environment=r[2], created_at=r[3], started_at=r[4], finished_at=r[5],
                    error=r[6]) for r in conn.execute(stmt).all()]


def executors_last_seen(conn: Connection) -> list[datetime]:
    """When each known executor was last heard from."""
    return list(conn.execute(select(executors.c.last_seen_at)).scalars().all())


# --- a run's page, the Executors page ----------------------------------------------------------------

@dataclass(frozen=True)
class LineageLine:
    source: str
    target: str
    phase: str | None


def lineage_of_run(conn: Connection, run_id: str) -> list[LineageLine]:
    """The lineage edges a run wrote (their latest writer), in the order they were first recorded."""
    t = lineage_edges
    rows = conn.execute(select(t.c.source, t.c.target, t.c.phase).where(t.c.run_id == run_id).order_by(t.c.id)).all()
    return [LineageLine(source=r[0], target=r[1], phase=r[2]) for r in rows]


def artifact_count(conn: Connection, run_id: str) -> int:
    return int(conn.execute(select(func.count()).where(artifacts.c.run_id == run_id)).scalar_one())


@dataclass(frozen=True)
class LeaseLine:
    executor_id: str
    run_id: str
    name: str  # the phase
    lease_expires_at: datetime | None
    attempt: int
    workspace_id: int


def current_leases(conn: Connection, statuses: Collection[str]) -> list[LeaseLine]:
    """The phases in ``statuses`` (those that hold a lease) with their executor and run."""
    rows = conn.execute(select(phases.c.executor_id, phases.c.run_id, phases.c.name, phases.c.lease_expires_at,
                               phases.c.attempt, runs.c.workspace_id)
                        .join(runs, runs.c.id == phases.c.run_id)
                        .where(phases.c.status.in_(sorted(statuses)))).all()
    return [LeaseLine(executor_id=r[0], run_id=r[1], name=r[2], lease_expires_at=r[3], attempt=int(r[4]),
                      workspace_id=int(r[5])) for r in rows]


# --- the Audit page --------------------------------------------------------------------------------------

def audit_page(conn: Connection, *, limit: int, actor: str | None = None, action_prefix: str | None = None,
               object_id: str | None = None, since: datetime | None = None,
               before: int | None = None) -> list[AuditRow]:
    """Audit entries, newest first, keyset-paginated by id (``before``)."""
    stmt = select(audit_log)
    if actor:
        stmt = stmt.where(audit_log.c.actor == actor)
    if action_prefix:
        stmt = stmt.where(audit_log.c.action.startswith(action_prefix, autoescape=True))
    if object_id:
        stmt = stmt.where(audit_log.c.object_id == object_id)
    if since:
        stmt = stmt.where(audit_log.c.ts >= since)
    if before is not None:
        stmt = stmt.where(audit_log.c.id < before)
    rows = conn.execute(stmt.order_by(audit_log.c.id.desc()).limit(limit)).mappings()
    return [AuditRow(id=int(r["id"]), ts=r["ts"], workspace_id=r["workspace_id"], actor=r["actor"],
                     action=r["action"], object_type=r["object_type"], object_id=r["object_id"],
                     details=r["details"] or {}, address=r["address"], seq=r["seq"], prev_hash=r["prev_hash"],
                     hash=r["hash"]) for r in rows]
