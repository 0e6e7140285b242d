"""Every statement of the run/phase queue, by name. Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, func, or_, select, update

from lakehouse.domain.states import PHASE_LEASED, PhaseStatus, RunStatus, phase_transition, run_transition
from lakehouse.store import dialect
from lakehouse.store.tables import executors, phase_attempts, phases, run_events, runs, workspaces
from lakehouse.store.types import UTCDateTime

READY_CHANNEL = "lakehouse_ready"
EVENTS_CHANNEL = "lakehouse_events"
_LEASED = [s.value for s in PHASE_LEASED]


def new_event_id() -> str:
    return uuid.uuid4().hex


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _stmt(conn: Connection, name: str, build: Any) -> Any:
    """The hot statements are built once per dialect (building one costs ~5x executing it)."""
    key = (conn.dialect.name, name)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return stmt


# --- runs -------------------------------------------------------------------------------------

def get_run(conn: Connection, run_id: str, *, lock: bool = False) -> RowMapping | None:
    def build() -> Any:
        stmt = select(runs).where(runs.c.id == bindparam("run_id"))
        return dialect.for_update(conn, stmt) if lock else stmt

    return conn.execute(_stmt(conn, f"get_run:{lock}", build), {"run_id": run_id}).mappings().first()


def set_run_status(conn: Connection, run: RowMapping, target: RunStatus, now: datetime,
                   error: str | None = None) -> None:
    status = run_transition(run["status"], target)
    values: dict[str, Any] = {"status": status.value}
    if status is RunStatus.RUNNING:
        values["started_at"] = now
    elif status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        values["finished_at"] = now
        if error is not None:
            values["error"] = error
    result = conn.execute(
        update(runs).where(runs.c.id == run["id"], runs.c.status == run["status"]).values(**values)
    )
    if result.rowcount != 1:
        raise RuntimeError(f"run {run['id']} changed under us")


def run_phases(conn: Connection, run_id: str) -> list[RowMapping]:
    return list(conn.execute(select(phases).where(phases.c.run_id == run_id).order_by(phases.c.idx)).mappings())


# --- events -----------------------------------------------------------------------------------

def append_events(conn: Connection, run_id: str, events: Sequence[dict[str, Any]]) -> int:
    """Append events to a run's trail with the next sequence numbers.

    Each event needs type, ts, level, message, payload; event_id and phase are optional. Events
    whose event_id is already in the trail are dropped (idempotent retries of a post).
    Returns how many were appended.
    """
    if not events:
        return 0
    rows = [dict(e) for e in events]
    for row in rows:
        row.setdefault("event_id", new_event_id())
        row.setdefault("phase", None)
        row.setdefault("payload", {})
    ids = [r["event_id"] for r in rows]
    if any(r.get("_client") for r in rows):
        seen = set(conn.execute(
            select(run_events.c.event_id).where(run_events.c.run_id == run_id, run_events.c.event_id.in_(ids))
        ).scalars())
        fresh: list[dict[str, Any]] = []
        for r in rows:
            if r["event_id"] not in seen:
                seen.add(r["event_id"])
                fresh.append(r)
        rows = fresh
        if not rows:
            return 0
    bump = _stmt(conn, "bump_seq", lambda: update(runs).where(runs.c.id == bindparam("run_id"))
                 .values(last_seq=runs.c.last_seq + bindparam("n")).returning(runs.c.last_seq))
    last: int = conn.execute(bump, {"run_id": run_id, "n": len(rows)}).scalar_one()
    first = last - len(rows) + 1
    out = []
    for i, r in enumerate(rows):
        out.append({
            "run_id": run_id, "seq": first + i, "event_id": r["event_id"], "type": r["type"],
            "phase": r["phase"], "ts": r["ts"], "level": r["level"], "message": r["message"],
            "payload": r["payload"],
        })
    insert = _stmt(conn, "insert_events", lambda: dialect.insert_ignore_stmt(conn, run_events, "run_id", "event_id"))
    inserted = len(conn.execute(insert, out).all())
    dialect.notify(conn, EVENTS_CHANNEL, run_id)
    return inserted


def read_events(conn: Connection, run_id: str, after: int = 0, limit: int = 1000) -> list[RowMapping]:
    stmt = (select(run_events).where(run_events.c.run_id == run_id, run_events.c.seq > after)
            .order_by(run_events.c.seq).limit(limit))
    return list(conn.execute(stmt).mappings())


# --- claiming ---------------------------------------------------------------------------------

def claim_candidates(conn: Connection, capabilities: Iterable[str], now: datetime, limit: int,
                     run_id: str | None = None, workspace_ids: Iterable[int] | None = None) -> list[RowMapping]:
    """Runnable phases this executor can take, oldest first, locked (SKIP LOCKED on Postgres).
    ``workspace_ids`` (an executor bound to workspaces) keeps only phases of runs in them; None: all."""
    scoped = workspace_ids is not None

    def build() -> Any:
        stmt = (select(phases)
                .where(phases.c.status == PhaseStatus.QUEUED.value,
                       phases.c.capability.in_(bindparam("caps", expanding=True)),
                       phases.c.available_at <= bindparam("now"))
                .order_by(phases.c.available_at, phases.c.id)
                .limit(bindparam("limit")))
        if run_id is not None:
            stmt = stmt.where(phases.c.run_id == bindparam("run_id"))
        if scoped:
            stmt = stmt.where(phases.c.run_id.in_(
                select(runs.c.id).where(runs.c.workspace_id.in_(bindparam("ws", expanding=True)))))
        return dialect.skip_locked(conn, stmt, phases)

    params: dict[str, Any] = {"caps": list(capabilities), "now": now, "limit": limit, "run_id": run_id}
    if scoped:
        params["ws"] = sorted(workspace_ids or ())
    name = f"claim_candidates:{run_id is None}:{scoped}"
    return list(conn.execute(_stmt(conn, name, build), params).mappings())


def workspace_slug(conn: Connection, workspace_id: int) -> str:
    """A workspace's slug (claims carry it to the executor)."""
    stmt = _stmt(conn, "workspace_slug", lambda: select(workspaces.c.slug).where(
        workspaces.c.id == bindparam("ws_id")))
    slug: str = conn.execute(stmt, {"ws_id": workspace_id}).scalar_one()
    return slug


def runnable_now(conn: Connection, now: datetime) -> bool:
    """Is any phase runnable at ``now``? (Cheap: the claimable index.) Wakes cross-process waiters."""
    stmt = _stmt(conn, "runnable_now", lambda: select(phases.c.id).where(
        phases.c.status == PhaseStatus.QUEUED.value, phases.c.available_at <= bindparam("now")).limit(1))
    return conn.execute(stmt, {"now": now}).first() is not None


def lease_phase(conn: Connection, phase: RowMapping, *, executor_id: str, lease_token: str,
                lease_token_hash: str, expires_at: datetime, now: datetime, start: bool) -> int:
    target = PhaseStatus.RUNNING if start else PhaseStatus.CLAIMED
    phase_transition(phase["status"], target)
    attempt = phase["attempt"] + 1
    lease = _stmt(conn, "lease_phase", lambda: update(phases).where(
        phases.c.id == bindparam("phase_id"), phases.c.status == PhaseStatus.QUEUED.value).values(
        status=bindparam("target"), attempt=bindparam("attempt"), lease_token=bindparam("lease_token"),
        lease_expires_at=bindparam("expires_at"), executor_id=bindparam("executor_id"),
        claimed_at=bindparam("now"), started_at=bindparam("started_at"), error=None))
    result = conn.execute(lease, {"phase_id": phase["id"], "target": target.value, "attempt": attempt,
                                  "lease_token": lease_token, "expires_at": expires_at, "executor_id": executor_id,
                                  "now": now, "started_at": now if start else None})
    if result.rowcount != 1:
        return 0
    record = _stmt(conn, "insert_attempt", lambda: phase_attempts.insert())
    conn.execute(record, {"phase_id": phase["id"], "attempt": attempt, "executor_id": executor_id,
                          "lease_token_hash": lease_token_hash, "status": target.value, "claimed_at": now})
    return attempt


def next_claim_deadline(conn: Connection, after: datetime) -> datetime | None:
    """When the next delayed (backoff) phase becomes runnable."""
    stmt = select(func.min(phases.c.available_at)).where(phases.c.status == PhaseStatus.QUEUED.value,
                                                          phases.c.available_at > after)
    return conn.execute(stmt).scalar()


def previous_outputs(conn: Connection, run_id: str, idx: int) -> dict[str, Any]:
    if idx == 0:
        return {}
    stmt = _stmt(conn, "previous_outputs", lambda: select(phases.c.name, phases.c.output_manifest).where(
        phases.c.run_id == bindparam("run_id"), phases.c.idx < bindparam("idx"),
        phases.c.status == PhaseStatus.SUCCEEDED.value).order_by(phases.c.idx))
    rows = conn.execute(stmt, {"run_id": run_id, "idx": idx})
    return {str(name): manifest for name, manifest in rows}


# --- lease holder calls -----------------------------------------------------------------------

def find_lease(conn: Connection, run_id: str, lease_token: str) -> RowMapping | None:
    stmt = _stmt(conn, "find_lease", lambda: dialect.for_update(conn, select(phases).where(
        phases.c.run_id == bindparam("run_id"), phases.c.lease_token == bindparam("lease_token"),
        phases.c.status.in_(_LEASED))))
    return conn.execute(stmt, {"run_id": run_id, "lease_token": lease_token}).mappings().first()


def extend_lease(conn: Connection, phase: RowMapping, lease_token: str, expires_at: datetime,
                 now: datetime, progress: Any) -> bool:
    values: dict[str, Any] = {"lease_expires_at": expires_at}
    if phase["status"] == PhaseStatus.CLAIMED.value:
        values["status"] = phase_transition(phase["status"], PhaseStatus.RUNNING).value
        values["started_at"] = now
    if progress is not None:
        values["progress"] = progress
    result = conn.execute(update(phases).where(
        phases.c.id == phase["id"], phases.c.lease_token == lease_token,
        phases.c.status == phase["status"]).values(**values))
    return result.rowcount == 1


def finish_phase(conn: Connection, phase: RowMapping, target: PhaseStatus, now: datetime, *,
                 output_manifest: Any = None, error: str | None = None, attempt_status: str | None = None,
                 available_at: datetime | None = None) -> None:
    """Move a leased (or, for cancel, any unfinished) phase out of its lease: to succeeded, failed,
    cancelled, or back to queued for a retry. Clears the lease token so the holder gets 409."""
    phase_transition(phase["status"], target)
    values: dict[str, Any] = {"status": target.value, "lease_token": None, "lease_expires_at": None}
    if target is PhaseStatus.QUEUED:
        values["available_at"] = available_at or now
        values["error"] = error
    else:
        values["finished_at"] = now
        if output_manifest is not None:
            values["output_manifest"] = output_manifest
        if error is not None:
            values["error"] = error
    result = conn.execute(update(phases).where(
        phases.c.id == phase["id"], phases.c.status == phase["status"]).values(**values))
    if result.rowcount != 1:
        raise RuntimeError(f"phase {phase['id']} changed under us")
    if phase["status"] in _LEASED:
        conn.execute(update(phase_attempts).where(
            phase_attempts.c.phase_id == phase["id"], phase_attempts.c.attempt == phase["attempt"])
            .values(status=attempt_status or target.value, finished_at=now, error=error))


def next_phase(conn: Connection, run_id: str, idx: int) -> RowMapping | None:
    stmt = _stmt(conn, "next_phase", lambda: select(phases).where(
        phases.c.run_id == bindparam("run_id"), phases.c.idx == bindparam("idx")))
    return conn.execute(stmt, {"run_id": run_id, "idx": idx}).mappings().first()


def queue_phase(conn: Connection, run_id: str, idx: int, now: datetime, row: RowMapping | None = None
                ) -> RowMapping | None:
    if row is None:
        row = next_phase(conn, run_id, idx)
    if row is None:
        return None
    phase_transition(row["status"], PhaseStatus.QUEUED)
    conn.execute(update(phases).where(phases.c.id == row["id"], phases.c.status == row["status"])
                 .values(status=PhaseStatus.QUEUED.value, available_at=now))
    return row


def release_lease(conn: Connection, phase: RowMapping, now: datetime) -> None:
    """Give a leased phase back untouched: queued again at once, the attempt not counted."""
    phase_transition(phase["status"], PhaseStatus.QUEUED)
    result = conn.execute(update(phases).where(
        phases.c.id == phase["id"], phases.c.lease_token == phase["lease_token"]).values(
        status=PhaseStatus.QUEUED.value, attempt=phase["attempt"] - 1, lease_token=None, lease_expires_at=None,
        executor_id=None, claimed_at=None, started_at=None, available_at=now))
    if result.rowcount != 1:
        raise RuntimeError(f"phase {phase['id']} changed under us")
    conn.execute(phase_attempts.delete().where(phase_attempts.c.phase_id == phase["id"],
                                               phase_attempts.c.attempt == phase["attempt"]))


def close_remaining(conn: Connection, run_id: str, target: PhaseStatus, now: datetime) -> list[RowMapping]:
    """Cancel or skip every unfinished phase of a run; returns the phases it changed."""
    rows = list(conn.execute(select(phases).where(
        phases.c.run_id == run_id,
        phases.c.status.in_([PhaseStatus.PENDING.value, PhaseStatus.QUEUED.value, *_LEASED]),
    ).order_by(phases.c.idx)).mappings())
    changed = []
    for row in rows:
        tgt = target
        if target is PhaseStatus.SKIPPED and row["status"] != PhaseStatus.PENDING.value:
            tgt = PhaseStatus.CANCELLED
        finish_phase(conn, row, tgt, now, attempt_status="cancelled")
        changed.append(row)
    return changed


# --- reaping ----------------------------------------------------------------------------------

def expired_leases(conn: Connection, now: datetime, claim_deadline: datetime, limit: int = 100) -> list[RowMapping]:
    stmt = (select(phases).where(or_(
        and_(phases.c.status.in_(_LEASED), phases.c.lease_expires_at < now),
        and_(phases.c.status == PhaseStatus.CLAIMED.value, phases.c.claimed_at < claim_deadline),
    )).order_by(phases.c.id).limit(limit))
    return list(conn.execute(dialect.skip_locked(conn, stmt, phases)).mappings())


def timed_out_phases(conn: Connection, now: datetime, limit: int = 100) -> list[RowMapping]:
    """Running phases past their ``timeout_s``; the elapsed-time test is in SQL, so a page of
    ``limit`` holds only phases that really timed out (later ones are never starved)."""
    def build() -> Any:
        elapsed = dialect.seconds_since(conn, phases.c.started_at, bindparam("now", type_=UTCDateTime()))
        stmt = (select(phases).where(phases.c.status == PhaseStatus.RUNNING.value,
                                     phases.c.timeout_s.is_not(None), phases.c.started_at.is_not(None),
                                     elapsed > phases.c.timeout_s)
                .order_by(phases.c.id).limit(bindparam("limit")))
        return dialect.skip_locked(conn, stmt, phases)

    return list(conn.execute(_stmt(conn, "timed_out_phases", build), {"now": now, "limit": limit}).mappings())


# --- executors --------------------------------------------------------------------------------

def touch_executor(conn: Connection, executor_id: str, capabilities: list[str] | None, now: datetime,
                   current: tuple[str, str] | bool | None = False) -> None:
    """Register an executor on first sight, refresh its last-seen time and capabilities."""
    values: dict[str, Any] = {"last_seen_at": now}
    if capabilities is not None:
        values["capabilities"] = sorted(set(capabilities))
    if current is not False:
        values["current_run_id"] = current[0] if isinstance(current, tuple) else None
        values["current_phase"] = current[1] if isinstance(current, tuple) else None
    keys = tuple(sorted(values))
    stmt = _stmt(conn, f"touch_executor:{keys}", lambda: update(executors).where(
        executors.c.id == bindparam("executor_id_")).values({k: bindparam(k) for k in keys}))
    result = conn.execute(stmt, {**values, "executor_id_": executor_id})
    if result.rowcount == 0:
        row = {"id": executor_id, "capabilities": sorted(set(capabilities or [])), "first_seen_at": now,
               "last_seen_at": now, "current_run_id": None, "current_phase": None}
        if isinstance(current, tuple):
            row["current_run_id"], row["current_phase"] = current
        dialect.insert_ignore(conn, executors, [row], "id")
