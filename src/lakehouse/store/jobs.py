"""Every statement about jobs, their versions, triggers, job runs and backfills, by name. Callers own
the transaction. Runs of jobs are inserted set-based here (two statements on PostgreSQL, one per table
on SQLite, for any number of runs), so that a scheduler pass or a 10,000-run backfill costs a handful
of round trips."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, RowMapping, and_, bindparam, func, select, update

from lakehouse.domain.events import EventType
from lakehouse.domain.jobs import BackfillStatus, JobStatus, PromotionStatus, backfill_transition, promotion_transition
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.domain.states import RUN_FINISHED, PhaseStatus, RunStatus, phase_transition, run_transition
from lakehouse.store import dialect, queue
from lakehouse.store.tables import (
    backfills,
    connections,
    job_promotions,
    job_runs,
    job_triggers,
    job_versions,
    jobs,
    phases,
    promotion_gates,
    run_events,
    runs,
    workspaces,
)
from lakehouse.store.types import UTCDateTime

FINISHED = [s.value for s in RUN_FINISHED]


@dataclass(frozen=True, slots=True)
class PhasePlan:
    """A phase of a :class:`RunPlan` (the fields of ``PhaseSpec``, without its validation)."""

    name: str
    type: str
    params: dict[str, Any]
    capability: str | None = None
    timeout_s: float | None = None
    max_attempts: int = 3

    @property
    def effective_capability(self) -> str:
        return self.capability or self.type


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run request built from one that was validated, differing only in parameter values (the runs of
    a backfill after its first): the fields of ``RunRequest``, without the cost of a pydantic model."""

    spec_slug: str
    git_sha: str
    phases: list[PhasePlan]
    input_manifest: dict[str, Any]
    environment: str
    workspace: str
    idempotency_key: str | None
    labels: dict[str, str] | None


@dataclass(frozen=True)
class NewRun:
    """One run of a job to insert: the request, and its link to the job."""

    run_id: str
    workspace_id: int
    request: RunRequest | RunPlan
    job_id: int
    version: int
    trigger: str
    created_by: str
    logical_date: datetime | None = None
    backfill_id: str | None = None
    released: bool = True  # false: the first phase waits (pending) for a backfill slot


# --- jobs -----------------------------------------------------------------------------------------

def get_job(conn: Connection, workspace_id: int, name: str, *, lock: bool = False) -> RowMapping | None:
    stmt = select(jobs).where(jobs.c.workspace_id == workspace_id, jobs.c.name == name)
    return conn.execute(dialect.for_update(conn, stmt) if lock else stmt).mappings().first()


def get_job_by_id(conn: Connection, job_id: int) -> RowMapping | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()


def list_jobs(conn: Connection, workspace_ids: Iterable[int] | None, *, archived: bool = False) -> list[RowMapping]:
    """Jobs with their workspace slug and current definition, by workspace and name."""
    stmt = (select(jobs, workspaces.c.slug.label("workspace"), job_versions.c.definition,
                   job_versions.c.content_hash, job_versions.c.git_sha)
            .join(workspaces, workspaces.c.id == jobs.c.workspace_id)
            .join(job_versions, and_(job_versions.c.job_id == jobs.c.id,
                                     job_versions.c.version == jobs.c.current_version)))
    if workspace_ids is not None:
        stmt = stmt.where(jobs.c.workspace_id.in_(list(workspace_ids)))
    if not archived:
        stmt = stmt.where(jobs.c.status == JobStatus.ACTIVE.value)
    return list(conn.execute(stmt.order_by(workspaces.c.slug, jobs.c.name)).mappings())


def insert_job(conn: Connection, *, workspace_id: int, name: str, type_: str, created_by: str, now: datetime) -> int:
    return int(conn.execute(jobs.insert().values(
        workspace_id=workspace_id, name=name, type=type_, status=JobStatus.ACTIVE.value, current_version=0,
        paused=False, created_by=created_by, created_at=now, updated_at=now,
    ).returning(jobs.c.id)).scalar_one())


def update_job(conn: Connection, job_id: int, **values: Any) -> None:
    if "status" in values:
        values["status"] = JobStatus(values["status"]).value
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


def connection_types(conn: Connection, workspace_id: int) -> dict[str, set[str]]:
    """The connections of a workspace by name (any environment), each with its types."""
    out: dict[str, set[str]] = {}
    for name, type_ in conn.execute(select(connections.c.name, connections.c.type)
                                    .where(connections.c.workspace_id == workspace_id)):
        out.setdefault(str(name), set()).add(str(type_))
    return out


# --- versions -------------------------------------------------------------------------------------

def insert_version(conn: Connection, *, job_id: int, version: int, content_hash: str, definition: dict[str, Any],
                   canonical: str, git_sha: str | None, created_by: str, now: datetime) -> None:
    conn.execute(job_versions.insert().values(
        job_id=job_id, version=version, content_hash=content_hash, definition=definition, canonical=canonical,
        git_sha=git_sha, created_by=created_by, created_at=now))


def get_version(conn: Connection, job_id: int, version: int) -> RowMapping | None:
    return conn.execute(select(job_versions).where(job_versions.c.job_id == job_id,
                                                   job_versions.c.version == version)).mappings().first()


def list_versions(conn: Connection, job_id: int) -> list[RowMapping]:
    return list(conn.execute(select(job_versions).where(job_versions.c.job_id == job_id)
                             .order_by(job_versions.c.version.desc())).mappings())


# --- triggers -------------------------------------------------------------------------------------

def set_upstreams(conn: Connection, job_id: int, workspace_id: int, upstreams: Sequence[str]) -> None:
    conn.execute(job_triggers.delete().where(job_triggers.c.job_id == job_id))
    if upstreams:
        conn.execute(job_triggers.insert(), [{"job_id": job_id, "upstream": u, "workspace_id": workspace_id}
                                             for u in upstreams])


def trigger_edges(conn: Connection, workspace_id: int) -> list[tuple[str, str]]:
    """(job, upstream) of every active job of a workspace."""
    stmt = (select(jobs.c.name, job_triggers.c.upstream).join(jobs, jobs.c.id == job_triggers.c.job_id)
            .where(job_triggers.c.workspace_id == workspace_id, jobs.c.status == JobStatus.ACTIVE.value))
    return [(r[0], r[1]) for r in conn.execute(stmt)]


def downstream_jobs(conn: Connection, workspace_id: int, upstream: str) -> list[RowMapping]:
    """Active, unpaused jobs that run when ``upstream`` succeeds, with their current definition."""
    stmt = (select(jobs, job_versions.c.definition)
            .join(job_triggers, job_triggers.c.job_id == jobs.c.id)
            .join(job_versions, and_(job_versions.c.job_id == jobs.c.id,
                                     job_versions.c.version == jobs.c.current_version))
            .where(job_triggers.c.workspace_id == workspace_id, job_triggers.c.upstream == upstream,
                   jobs.c.status == JobStatus.ACTIVE.value, jobs.c.paused.is_(False)))
    return list(conn.execute(stmt).mappings())


# --- runs of jobs ---------------------------------------------------------------------------------

_COMPILED: dict[tuple[str, str, tuple[str, ...], bool], tuple[str, list[str], list[Any]]] = {}
_CHUNK = 900  # ids per IN list (SQLite allows 999 variables by default)


def _memo(proc: Any) -> Any:
    """A bind processor that converts each distinct value once (the rows of one batch share their
    timestamps: converting ``now`` 40,000 times is most of the cost on SQLite)."""
    seen: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        if value not in seen:
            seen[value] = proc(value)
        return seen[value]

    return process


def _fast_insert(conn: Connection, table: Any, rows: list[dict[str, Any]], *, ignore_conflicts: bool = False
                 ) -> None:
    """Many rows into one table through the driver's executemany, with the columns' bind processors
    applied once per value: SQLAlchemy's per-row parameter processing costs ~50 µs a row, which a
    10,000-run backfill (40,000 rows) cannot afford. ``ignore_conflicts``: a row that would break a
    unique constraint is skipped (``ON CONFLICT DO NOTHING``)."""
    if not rows:
        return
    cols = tuple(rows[0])
    key = (conn.dialect.name, table.name, cols, ignore_conflicts)
    if key not in _COMPILED:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(cols))
        order = list(compiled.positiontup) if compiled.positional else list(cols)
        procs = [table.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for c in order]
        _COMPILED[key] = (compiled.string + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""), order, procs)
    sql, order, procs = _COMPILED[key]
    pairs = [(c, _memo(p) if p is not None and isinstance(table.c[c].type, UTCDateTime) else p)
             for c, p in zip(order, procs, strict=True)]
    if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
        params: list[Any] = [tuple(p(r[c]) if p else r[c] for c, p in pairs) for r in rows]
    else:
        params = [{c: p(r[c]) if p else r[c] for c, p in pairs} for r in rows]
    conn.exec_driver_sql(sql, params)


def _insert_new_runs(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """SQLite: insert run rows, skipping those whose idempotency key the workspace already has; the ids
    inserted. The write transaction holds the database, so the ids found afterwards are exactly the
    rows this statement inserted (ids are fresh UUIDs)."""
    _fast_insert(conn, runs, rows, ignore_conflicts=True)
    ids = [r["id"] for r in rows]
    found: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        found.update(conn.execute(select(runs.c.id).where(runs.c.id.in_(ids[i:i + _CHUNK]))).scalars())
    return found


def _steps(n: NewRun) -> list[PhaseSpec | PhasePlan]:
    return cast("list[PhaseSpec | PhasePlan]", n.request.phases)


def _created_message(n: NewRun) -> str:
    return f"run of {n.request.spec_slug} created with {len(n.request.phases)} phases ({n.trigger})"


def _created_payload(n: NewRun) -> dict[str, Any]:
    return {"spec_slug": n.request.spec_slug, "git_sha": n.request.git_sha, "environment": n.request.environment,
            "phases": [p.name for p in n.request.phases], "created_by": n.created_by, "job_id": n.job_id,
            "job_version": n.version, "trigger": n.trigger}


# PostgreSQL: the runs, then the rest of the runs that were inserted — two statements, each reading
# its rows from one JSON document (orjson) with ``jsonb_to_recordset``: no per-value work in Python or
# in the driver, no row materialised between the tables, one round trip per statement.
_PG_INSERT_RUNS = """
WITH new_runs AS (
  INSERT INTO runs (id, workspace_id, environment, spec_slug, git_sha, status, input_manifest, idempotency_key,
                    created_by, created_at, last_seq, labels)
  SELECT id, workspace_id, environment, spec_slug, git_sha, %(queued)s, input_manifest, idempotency_key,
         created_by, %(now)s, 1, labels
  FROM jsonb_to_recordset(CAST(%(runs)s AS jsonb)) AS r(
    id varchar(36), workspace_id bigint, environment varchar(32), spec_slug varchar(200), git_sha varchar(64),
    input_manifest jsonb, idempotency_key varchar(200), created_by varchar(100), labels jsonb)
  ON CONFLICT DO NOTHING RETURNING id
)
SELECT array_agg(id) FROM new_runs
"""

_PG_INSERT_REST = """
WITH new_phases AS (
  INSERT INTO phases (run_id, idx, name, type, capability, params, timeout_s, max_attempts, status, attempt,
                      available_at, workspace_id)
  SELECT run_id, idx, name, type, capability, params, timeout_s, max_attempts, status, 0, available_at, workspace_id
  FROM jsonb_to_recordset(CAST(%(phases)s AS jsonb)) AS p(
    run_id varchar(36), idx integer, name varchar(200), type varchar(64), capability varchar(64), params jsonb,
    timeout_s double precision, max_attempts integer, status varchar(16), available_at timestamptz,
    workspace_id bigint)
), new_events AS (
  INSERT INTO run_events (run_id, seq, event_id, type, phase, ts, level, message, payload)
  SELECT run_id, 1, replace(gen_random_uuid()::text, '-', ''), %(created)s, NULL, %(now)s, 'info', message, payload
  FROM jsonb_to_recordset(CAST(%(events)s AS jsonb)) AS e(run_id varchar(36), message text, payload jsonb)
)
INSERT INTO job_runs (run_id, job_id, version, workspace_id, trigger, logical_date, backfill_id, released,
                      superseded, followed_up, created_at)
SELECT run_id, job_id, version, workspace_id, trigger, logical_date, backfill_id, released, false, false, %(now)s
FROM jsonb_to_recordset(CAST(%(links)s AS jsonb)) AS l(
  run_id varchar(36), job_id bigint, version integer, workspace_id bigint, trigger varchar(16),
  logical_date timestamptz, backfill_id varchar(36), released boolean)
"""


def _json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


def _pg_insert_runs(conn: Connection, new: Sequence[NewRun], now: datetime) -> list[NewRun]:
    """Every row of the runs on PostgreSQL in two statements: the runs (those whose idempotency key
    the workspace has are skipped), then the phases, RUN_CREATED events (event ids made by the
    database) and job links of the runs inserted. Returns the runs inserted."""
    found = conn.exec_driver_sql(_PG_INSERT_RUNS, {"queued": RunStatus.QUEUED.value, "now": now, "runs": _json([{
        "id": n.run_id, "workspace_id": n.workspace_id, "environment": n.request.environment,
        "spec_slug": n.request.spec_slug, "git_sha": n.request.git_sha, "input_manifest": n.request.input_manifest,
        "idempotency_key": n.request.idempotency_key, "created_by": n.created_by, "labels": n.request.labels,
    } for n in new])}).scalar()
    if not found:
        return []
    fresh = list(new) if len(found) == len(new) else [n for n in new if n.run_id in set(found)]
    queued, pending = PhaseStatus.QUEUED.value, PhaseStatus.PENDING.value
    conn.exec_driver_sql(_PG_INSERT_REST, {
        "now": now, "created": EventType.RUN_CREATED.value,
        "phases": _json([{"run_id": n.run_id, "idx": i, "name": p.name, "type": p.type,
                          "capability": p.effective_capability, "params": p.params, "timeout_s": p.timeout_s,
                          "max_attempts": p.max_attempts, "status": queued if i == 0 and n.released else pending,
                          "available_at": now if i == 0 and n.released else None, "workspace_id": n.workspace_id}
                         for n in fresh for i, p in enumerate(_steps(n))]),
        "events": _json([{"run_id": n.run_id, "message": _created_message(n), "payload": _created_payload(n)}
                         for n in fresh]),
        "links": _json([{"run_id": n.run_id, "job_id": n.job_id, "version": n.version,
                         "workspace_id": n.workspace_id, "trigger": n.trigger, "logical_date": n.logical_date,
                         "backfill_id": n.backfill_id, "released": n.released} for n in fresh]),
    })
    return fresh


def insert_runs(conn: Connection, new: Sequence[NewRun], now: datetime) -> list[str]:
    """Insert runs with their phases, RUN_CREATED events and job links, set-based: two statements on
    PostgreSQL, one executemany per table on SQLite, for any number of runs. A run whose idempotency
    key the workspace already has is skipped (another pass or process made it); returns the ids of the
    runs inserted, in the order given."""
    if not new:
        return []
    if conn.dialect.name == "postgresql":
        fresh = _pg_insert_runs(conn, new, now)
    else:
        fresh = _sqlite_insert_runs(conn, new, now)
    if any(n.released for n in fresh):
        dialect.notify(conn, queue.READY_CHANNEL)
    return [n.run_id for n in fresh]


def _sqlite_insert_runs(conn: Connection, new: Sequence[NewRun], now: datetime) -> list[NewRun]:
    rows = [{
        "id": n.run_id, "workspace_id": n.workspace_id, "environment": n.request.environment,
        "spec_slug": n.request.spec_slug, "git_sha": n.request.git_sha, "status": RunStatus.QUEUED.value,
        "input_manifest": n.request.input_manifest, "idempotency_key": n.request.idempotency_key,
        "created_by": n.created_by, "created_at": now, "last_seq": 1, "labels": n.request.labels,
    } for n in new]
    inserted = _insert_new_runs(conn, rows)
    fresh = [n for n in new if n.run_id in inserted]
    if not fresh:
        return []
    queued, pending = PhaseStatus.QUEUED.value, PhaseStatus.PENDING.value
    _fast_insert(conn, phases, [
        {"run_id": n.run_id, "idx": i, "name": p.name, "type": p.type, "capability": p.effective_capability,
         "params": p.params, "timeout_s": p.timeout_s, "max_attempts": p.max_attempts,
         "status": queued if i == 0 and n.released else pending, "attempt": 0,
         "available_at": now if i == 0 and n.released else None, "workspace_id": n.workspace_id}
        for n in fresh for i, p in enumerate(_steps(n))
    ])
    _fast_insert(conn, run_events, [{
        "run_id": n.run_id, "seq": 1, "event_id": queue.new_event_id(), "type": EventType.RUN_CREATED.value,
        "phase": None, "ts": now, "level": "info", "message": _created_message(n), "payload": _created_payload(n),
    } for n in fresh])
    _fast_insert(conn, job_runs, [{
        "run_id": n.run_id, "job_id": n.job_id, "version": n.version, "workspace_id": n.workspace_id,
        "trigger": n.trigger, "logical_date": n.logical_date, "backfill_id": n.backfill_id,
        "released": n.released, "superseded": False, "followed_up": False, "created_at": now,
    } for n in fresh])
    return fresh


def run_by_idempotency(conn: Connection, workspace_id: int, key: str) -> str | None:
    return conn.execute(select(runs.c.id).where(runs.c.workspace_id == workspace_id,
                                                runs.c.idempotency_key == key)).scalar()


def job_run_link(conn: Connection, run_id: str) -> RowMapping | None:
    return conn.execute(select(job_runs).where(job_runs.c.run_id == run_id)).mappings().first()


def runs_of_job(conn: Connection, job_id: int, limit: int = 50) -> list[RowMapping]:
    stmt = (select(job_runs, runs.c.status, runs.c.environment, runs.c.started_at, runs.c.finished_at,
                   runs.c.error, runs.c.created_by)
            .join(runs, runs.c.id == job_runs.c.run_id).where(job_runs.c.job_id == job_id)
            .order_by(job_runs.c.created_at.desc(), job_runs.c.run_id.desc()).limit(limit))
    return list(conn.execute(stmt).mappings())


def phases_of_runs(conn: Connection, run_ids: Sequence[str]) -> list[RowMapping]:
    """(run_id, idx, name, status, attempt) of every phase of some runs, in phase order."""
    if not run_ids:
        return []
    return list(conn.execute(select(phases.c.run_id, phases.c.idx, phases.c.name, phases.c.status, phases.c.attempt)
                             .where(phases.c.run_id.in_(list(run_ids))).order_by(phases.c.run_id, phases.c.idx))
                .mappings())


def last_runs(conn: Connection, job_ids: Sequence[int]) -> dict[int, RowMapping]:
    """The newest run of each job."""
    if not job_ids:
        return {}
    newest = (select(job_runs.c.job_id, func.max(job_runs.c.created_at).label("at"))
              .where(job_runs.c.job_id.in_(list(job_ids))).group_by(job_runs.c.job_id).subquery())
    stmt = (select(job_runs.c.job_id, job_runs.c.run_id, runs.c.status, runs.c.created_at)
            .join(newest, and_(newest.c.job_id == job_runs.c.job_id, newest.c.at == job_runs.c.created_at))
            .join(runs, runs.c.id == job_runs.c.run_id))
    return {r["job_id"]: r for r in conn.execute(stmt).mappings()}


# --- scheduling -----------------------------------------------------------------------------------

def due_jobs(conn: Connection, now: datetime, limit: int) -> list[RowMapping]:
    """Active, unpaused jobs whose next tick is due, with their current definition; on PostgreSQL
    locked (SKIP LOCKED) so that two schedulers share the work instead of doing it twice. The current
    version's ``content_hash``, ``git_sha`` and ``version_created_by`` come along (a dev tick needs no
    other read)."""
    stmt = (select(jobs, job_versions.c.definition, job_versions.c.content_hash, job_versions.c.git_sha,
                   job_versions.c.created_by.label("version_created_by"))
            .join(job_versions, and_(job_versions.c.job_id == jobs.c.id,
                                     job_versions.c.version == jobs.c.current_version))
            .where(jobs.c.next_fire_at <= now, jobs.c.status == JobStatus.ACTIVE.value, jobs.c.paused.is_(False))
            .order_by(jobs.c.next_fire_at).limit(limit))
    return list(conn.execute(dialect.skip_locked(conn, stmt, jobs)).mappings())


def set_ticks(conn: Connection, ticks: Sequence[dict[str, Any]]) -> None:
    """[{job_id, next_fire_at, last_tick_at}] in one statement."""
    if ticks:
        conn.execute(update(jobs).where(jobs.c.id == bindparam("job_id"))
                     .values(next_fire_at=bindparam("next_fire_at"), last_tick_at=bindparam("last_tick_at")),
                     list(ticks))


def next_fires(conn: Connection, workspace_ids: Iterable[int] | None, until: datetime) -> list[RowMapping]:
    stmt = (select(jobs.c.id, jobs.c.name, jobs.c.next_fire_at, workspaces.c.slug.label("workspace"))
            .join(workspaces, workspaces.c.id == jobs.c.workspace_id)
            .where(jobs.c.next_fire_at <= until, jobs.c.status == JobStatus.ACTIVE.value, jobs.c.paused.is_(False)))
    if workspace_ids is not None:
        stmt = stmt.where(jobs.c.workspace_id.in_(list(workspace_ids)))
    return list(conn.execute(stmt.order_by(jobs.c.next_fire_at)).mappings())


def finished_unfollowed(conn: Connection, limit: int) -> list[RowMapping]:
    """Finished runs of jobs the trigger pass has not looked at yet (with the job's name)."""
    stmt = (select(job_runs.c.run_id, job_runs.c.job_id, job_runs.c.workspace_id, runs.c.status,
                   jobs.c.name.label("job"))
            .join(runs, runs.c.id == job_runs.c.run_id).join(jobs, jobs.c.id == job_runs.c.job_id)
            .where(job_runs.c.followed_up.is_(False), runs.c.status.in_(FINISHED))
            .order_by(job_runs.c.created_at).limit(limit))
    return list(conn.execute(dialect.skip_locked(conn, stmt, job_runs)).mappings())


def mark_followed(conn: Connection, run_ids: Sequence[str]) -> None:
    if run_ids:
        conn.execute(update(job_runs).where(job_runs.c.run_id.in_(list(run_ids))).values(followed_up=True))


# --- backfills ------------------------------------------------------------------------------------

def insert_backfill(conn: Connection, **values: Any) -> None:
    conn.execute(backfills.insert().values(status=BackfillStatus.RUNNING.value, **values))


def get_backfill(conn: Connection, backfill_id: str, *, lock: bool = False) -> RowMapping | None:
    stmt = (select(backfills, jobs.c.name.label("job"), workspaces.c.slug.label("workspace"))
            .join(jobs, jobs.c.id == backfills.c.job_id).join(workspaces, workspaces.c.id == backfills.c.workspace_id)
            .where(backfills.c.id == backfill_id))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=backfills)
    return conn.execute(stmt).mappings().first()


def list_backfills(conn: Connection, job_id: int, limit: int = 50) -> list[RowMapping]:
    stmt = (select(backfills, jobs.c.name.label("job"), workspaces.c.slug.label("workspace"))
            .join(jobs, jobs.c.id == backfills.c.job_id).join(workspaces, workspaces.c.id == backfills.c.workspace_id)
            .where(backfills.c.job_id == job_id).order_by(backfills.c.created_at.desc()).limit(limit))
    return list(conn.execute(stmt).mappings())


def running_backfills(conn: Connection) -> list[RowMapping]:
    return list(conn.execute(select(backfills).where(backfills.c.status == BackfillStatus.RUNNING.value)
                             .order_by(backfills.c.created_at)).mappings())


def set_backfill_status(conn: Connection, row: RowMapping, target: BackfillStatus, now: datetime) -> None:
    status = backfill_transition(row["status"], target)
    finished = None if status is BackfillStatus.RUNNING else now
    conn.execute(update(backfills).where(backfills.c.id == row["id"])
                 .values(status=status.value, finished_at=finished))


def backfill_counts(conn: Connection, backfill_id: str) -> dict[str, int]:
    """Runs of a backfill (its retried runs left out) by state: every run status, plus ``waiting``
    (queued, not released yet: its concurrency slot has not come)."""
    stmt = (select(runs.c.status, job_runs.c.released, func.count())
            .join(runs, runs.c.id == job_runs.c.run_id)
            .where(job_runs.c.backfill_id == backfill_id, job_runs.c.superseded.is_(False))
            .group_by(runs.c.status, job_runs.c.released))
    out = {s.value: 0 for s in RunStatus} | {"waiting": 0}
    for row in conn.execute(stmt):
        status, released, n = str(row[0]), bool(row[1]), int(row[2])
        out["waiting" if status == RunStatus.QUEUED.value and not released else status] += n
    return out


def release(conn: Connection, backfill_id: str, slots: int, now: datetime) -> list[str]:
    """Queue the first phase of up to ``slots`` waiting runs of a backfill (oldest logical date first)."""
    if slots <= 0:
        return []
    ids = [r[0] for r in conn.execute(
        select(job_runs.c.run_id).join(runs, runs.c.id == job_runs.c.run_id)
        .where(job_runs.c.backfill_id == backfill_id, job_runs.c.released.is_(False),
               runs.c.status == RunStatus.QUEUED.value)
        .order_by(job_runs.c.logical_date, job_runs.c.run_id).limit(slots))]
    if not ids:
        return []
    target = phase_transition(PhaseStatus.PENDING.value, PhaseStatus.QUEUED)
    conn.execute(update(job_runs).where(job_runs.c.run_id.in_(ids)).values(released=True))
    conn.execute(update(phases).where(phases.c.run_id.in_(ids), phases.c.idx == 0,
                                      phases.c.status == PhaseStatus.PENDING.value)
                 .values(status=target.value, available_at=now))
    dialect.notify(conn, queue.READY_CHANNEL)
    return ids


def active_released(conn: Connection, backfill_id: str) -> list[str]:
    """Released runs of a backfill that have not finished (they hold its concurrency slots)."""
    return [r[0] for r in conn.execute(
        select(job_runs.c.run_id).join(runs, runs.c.id == job_runs.c.run_id)
        .where(job_runs.c.backfill_id == backfill_id, job_runs.c.released.is_(True),
               runs.c.status.not_in(FINISHED)))]


def cancel_waiting(conn: Connection, backfill_id: str, now: datetime, reason: str, by: str) -> int:
    """Cancel every waiting (never released) run of a backfill set-based: its phases, the run, and a
    RUN_CANCELLED event each. Returns how many runs were cancelled."""
    waiting = (select(job_runs.c.run_id).where(job_runs.c.backfill_id == backfill_id,
                                               job_runs.c.released.is_(False)).scalar_subquery())
    phase_target = phase_transition(PhaseStatus.PENDING.value, PhaseStatus.CANCELLED)
    run_target = run_transition(RunStatus.QUEUED.value, RunStatus.CANCELLED)
    conn.execute(update(phases).where(phases.c.run_id.in_(waiting), phases.c.status == PhaseStatus.PENDING.value)
                 .values(status=phase_target.value, finished_at=now))
    done = conn.execute(update(runs).where(runs.c.id.in_(waiting), runs.c.status == RunStatus.QUEUED.value)
                        .values(status=run_target.value, finished_at=now, error=reason, last_seq=runs.c.last_seq + 1)
                        .returning(runs.c.id, runs.c.last_seq)).all()
    if done:
        conn.execute(run_events.insert(), [{
            "run_id": run_id, "seq": seq, "event_id": queue.new_event_id(), "type": EventType.RUN_CANCELLED.value,
            "phase": None, "ts": now, "level": "warning", "message": f"run cancelled by {by} (backfill cancelled)",
            "payload": {"by": by, "reason": reason, "backfill_id": backfill_id, "revoked_leases": []},
        } for run_id, seq in done])
    return len(done)


def failed_runs(conn: Connection, backfill_id: str) -> list[RowMapping]:
    """The current (not superseded) runs of a backfill that failed or were cancelled, with their run."""
    stmt = (select(job_runs, runs.c.input_manifest, runs.c.labels, runs.c.status)
            .join(runs, runs.c.id == job_runs.c.run_id)
            .where(job_runs.c.backfill_id == backfill_id, job_runs.c.superseded.is_(False),
                   runs.c.status.in_([RunStatus.FAILED.value, RunStatus.CANCELLED.value]))
            .order_by(job_runs.c.logical_date))
    return list(conn.execute(stmt).mappings())


def supersede(conn: Connection, run_ids: Sequence[str]) -> None:
    if run_ids:
        conn.execute(update(job_runs).where(job_runs.c.run_id.in_(list(run_ids))).values(superseded=True))


def retries_of(conn: Connection, backfill_id: str) -> int:
    return int(conn.execute(select(func.count()).select_from(job_runs)
                            .where(job_runs.c.backfill_id == backfill_id, job_runs.c.superseded.is_(True)))
               .scalar_one())


# --- promotion ------------------------------------------------------------------------------------

def get_gates(conn: Connection, workspace_id: int) -> dict[str, RowMapping]:
    """The gates a workspace configured, by environment."""
    return {r["environment"]: r for r in conn.execute(
        select(promotion_gates).where(promotion_gates.c.workspace_id == workspace_id)).mappings()}


def set_gates(conn: Connection, workspace_id: int, environment: str, values: dict[str, Any], by: str,
              now: datetime) -> None:
    key = and_(promotion_gates.c.workspace_id == workspace_id, promotion_gates.c.environment == environment)
    row = {**values, "updated_by": by, "updated_at": now}
    if conn.execute(update(promotion_gates).where(key).values(**row)).rowcount == 0:
        conn.execute(promotion_gates.insert().values(workspace_id=workspace_id, environment=environment, **row))


def finished_runs_of_version(conn: Connection, job_id: int, version: int, environment: str, limit: int
                             ) -> list[dict[str, Any]]:
    """The newest finished runs of one job version in one environment (newest first), each with the
    data-quality summary of its validate phase (``dq``: None when it has none)."""
    if limit <= 0:
        return []
    rows = list(conn.execute(
        select(runs.c.id, runs.c.status, runs.c.finished_at).join(job_runs, job_runs.c.run_id == runs.c.id)
        .where(job_runs.c.job_id == job_id, job_runs.c.version == version, runs.c.environment == environment,
               runs.c.status.in_(FINISHED))
        .order_by(runs.c.finished_at.desc(), runs.c.id.desc()).limit(limit)).mappings())
    ids = [r["id"] for r in rows]
    dq: dict[str, Any] = {}
    if ids:
        for run_id, manifest in conn.execute(select(phases.c.run_id, phases.c.output_manifest)
                                             .where(phases.c.run_id.in_(ids), phases.c.type == "validate")):
            if isinstance(manifest, dict) and isinstance(manifest.get("dq"), dict):
                dq[str(run_id)] = manifest["dq"]
    return [{"run_id": r["id"], "status": r["status"], "finished_at": r["finished_at"], "dq": dq.get(r["id"])}
            for r in rows]


def insert_promotion(conn: Connection, **values: Any) -> int:
    values["status"] = PromotionStatus(values["status"]).value
    return int(conn.execute(job_promotions.insert().values(**values).returning(job_promotions.c.id)).scalar_one())


def get_promotion(conn: Connection, promotion_id: int) -> RowMapping | None:
    return conn.execute(select(job_promotions).where(job_promotions.c.id == promotion_id)).mappings().first()


def pending_promotion(conn: Connection, job_id: int, environment: str, *, lock: bool = False) -> RowMapping | None:
    stmt = (select(job_promotions).where(job_promotions.c.job_id == job_id,
                                         job_promotions.c.environment == environment,
                                         job_promotions.c.status == PromotionStatus.PENDING.value)
            .order_by(job_promotions.c.id.desc()))
    return conn.execute(dialect.for_update(conn, stmt) if lock else stmt).mappings().first()


def decide_promotion(conn: Connection, row: RowMapping, target: PromotionStatus, by: str | None, now: datetime,
                     comment: str | None = None, gates: Any = None) -> None:
    status = promotion_transition(row["status"], target)
    values: dict[str, Any] = {"status": status.value, "decided_by": by, "decided_at": now}
    if comment is not None:
        values["comment"] = comment
    if gates is not None:
        values["gates"] = gates
    conn.execute(update(job_promotions).where(job_promotions.c.id == row["id"],
                                              job_promotions.c.status == row["status"]).values(**values))


def promoted_versions(conn: Connection, job_ids: Sequence[int]) -> dict[tuple[int, str], RowMapping]:
    """The version each job has in each environment: its newest decided promotion, by (job, env)."""
    if not job_ids:
        return {}
    stmt = (select(job_promotions)
            .where(job_promotions.c.job_id.in_(list(job_ids)),
                   job_promotions.c.status == PromotionStatus.PROMOTED.value)
            .order_by(job_promotions.c.decided_at, job_promotions.c.id))
    out: dict[tuple[int, str], RowMapping] = {}
    for r in conn.execute(stmt).mappings():
        out[(r["job_id"], r["environment"])] = r  # later rows win
    return out


def promoted_version(conn: Connection, job_id: int, environment: str) -> int | None:
    row = conn.execute(select(job_promotions.c.version)
                       .where(job_promotions.c.job_id == job_id, job_promotions.c.environment == environment,
                              job_promotions.c.status == PromotionStatus.PROMOTED.value)
                       .order_by(job_promotions.c.decided_at.desc(), job_promotions.c.id.desc())
                       .limit(1)).first()
    return int(row[0]) if row else None


def ever_promoted(conn: Connection, job_id: int, version: int, environment: str) -> bool:
    return conn.execute(select(func.count()).select_from(job_promotions)
                        .where(job_promotions.c.job_id == job_id, job_promotions.c.version == version,
                               job_promotions.c.environment == environment,
                               job_promotions.c.status == PromotionStatus.PROMOTED.value)).scalar_one() > 0


def list_promotions(conn: Connection, job_id: int, limit: int = 50) -> list[RowMapping]:
    return list(conn.execute(select(job_promotions).where(job_promotions.c.job_id == job_id)
                             .order_by(job_promotions.c.id.desc()).limit(limit)).mappings())
