"""Every statement of the run/phase queue, by name. Callers own the transaction."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Float,
    Integer,
    RowMapping,
    String,
    Text,
    and_,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
    update,
)

from lakehouse.domain.events import EventType
from lakehouse.domain.states import (
    PHASE_LEASED,
    AttemptStatus,
    PhaseStatus,
    RunStatus,
    phase_transition,
    run_transition,
)
from lakehouse.store import caps as caps_store
from lakehouse.store import dialect
from lakehouse.store.tables import executors, phase_attempts, phases, run_events, runs, workspaces
from lakehouse.store.types import JSONDoc, UTCDateTime

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
        claimed_at=bindparam("now"), started_at=bindparam("started_at"), error=None,
        timeout_s=bindparam("timeout_s")))
    result = conn.execute(lease, {"phase_id": phase["id"], "target": target.value, "attempt": attempt,
                                  "timeout_s": phase["timeout_s"],
                                  "lease_token": lease_token, "expires_at": expires_at, "executor_id": executor_id,
                                  "now": now, "started_at": now if start else None})
    if result.rowcount != 1:
        return 0
    record = _stmt(conn, "insert_attempt", lambda: phase_attempts.insert())
    conn.execute(record, {"phase_id": phase["id"], "attempt": attempt, "executor_id": executor_id,
                          "lease_token_hash": lease_token_hash, "status": target.value, "claimed_at": now})
    return int(attempt)


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
        finish_phase(conn, row, tgt, now, attempt_status=AttemptStatus.CANCELLED.value)
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


# --- the set-based hot path (PostgreSQL) ------------------------------------------------------
#
# Claim, start, attempt record, run transition, events (numbered from ``UPDATE runs … RETURNING
# last_seq``, the new value, so a concurrent writer on the same run cannot collide) and the
# executor touch are ONE statement of data-modifying CTEs; complete + hand-off of the run's next
# phase + claim of the executor's next work (+ the notifications) are another. Only when an item
# is not completed does the caller take the slow path (404 / 409 / expired told apart there).
# Lease tokens are 244 random bits from ``gen_random_uuid()``; the attempt keeps their SHA-256.

_TOKEN = "replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '')"
_UUID_HEX = "replace(gen_random_uuid()::text, '-', '')"
_HASH = "encode(sha256(convert_to({}, 'UTF8')), 'hex')"
_WS = "run_id IN (SELECT id FROM runs WHERE workspace_id = ANY(CAST(:ws AS bigint[])))"

# k_*: lease up to {limit} runnable phases (oldest first, SKIP LOCKED), start them, record the
# attempts and move their runs to running; k_events is a SELECT of their trail rows.
# The candidates come from store/caps.py (claim_ctes): caps applied, fair order between workspaces.
_CLAIM_CTES = """{caps},
k_c AS (
    SELECT p.id, k_t.cap_timeout FROM phases p JOIN k_t ON k_t.id = p.id
    WHERE p.id = ANY(ARRAY(SELECT id FROM k_t WHERE id NOT IN (SELECT id FROM k_x))) AND p.status = 'queued'
    ORDER BY k_t.fair, k_t.turn, k_t.available_at, k_t.id
    LIMIT {limit}
    FOR UPDATE OF p SKIP LOCKED
),
k_l AS (
    UPDATE phases p SET status = :k_target, attempt = p.attempt + 1, lease_token = {token},
        lease_expires_at = :expires, executor_id = :executor_id, claimed_at = :now,
        started_at = CASE WHEN :k_start THEN CAST(:now AS timestamptz) END, error = NULL,
        timeout_s = least(p.timeout_s, k_c.cap_timeout)
    FROM k_c WHERE p.id = k_c.id
    RETURNING p.id, p.run_id, p.idx, p.name, p.type, p.attempt, p.max_attempts, p.lease_token, p.timeout_s,
              p.params, p.available_at
),
k_a AS (
    INSERT INTO phase_attempts (phase_id, attempt, executor_id, lease_token_hash, status, claimed_at)
    SELECT id, attempt, :executor_id, {hash}, :k_target, :now FROM k_l
),
k_g AS (SELECT run_id, count(*) AS n FROM k_l GROUP BY run_id),
k_rl AS (SELECT r.id, r.status FROM runs r WHERE r.id IN (SELECT run_id FROM k_g) FOR UPDATE),
k_ru AS (
    UPDATE runs r SET
        status = CASE WHEN k_rl.status = 'queued' THEN 'running' ELSE r.status END,
        started_at = CASE WHEN k_rl.status = 'queued' THEN CAST(:now AS timestamptz) ELSE r.started_at END,
        last_seq = r.last_seq + k_g.n * :k_per + CASE WHEN k_rl.status = 'queued' THEN 1 ELSE 0 END
    FROM k_rl JOIN k_g ON k_g.run_id = k_rl.id
    WHERE r.id = k_rl.id
    RETURNING r.id, r.last_seq, k_rl.status = 'queued' AS began, k_g.n, r.input_manifest, r.spec_slug, r.git_sha,
              r.environment, r.workspace_id, r.created_by
),
k_lk AS (SELECT k_l.*, row_number() OVER (PARTITION BY k_l.run_id ORDER BY k_l.id) AS k FROM k_l)"""

_CLAIM_EVENTS = """
    SELECT k_ru.id AS run_id, k_ru.last_seq - k_ru.n * :k_per AS seq, {uuid} AS event_id, 'RUN_STARTED' AS type,
           CAST(NULL AS text) AS phase, CAST(:now AS timestamptz) AS ts, 'info' AS level, 'run started' AS message,
           '{{}}'::jsonb AS payload
    FROM k_ru WHERE k_ru.began
    UNION ALL
    SELECT k_lk.run_id, k_ru.last_seq - k_ru.n * :k_per + (k_lk.k - 1) * :k_per + 1, {uuid}, 'PHASE_CLAIMED',
           k_lk.name, :now, 'info', k_lk.name || ' claimed by ' || CAST(:executor_id AS text),
           jsonb_build_object('executor_id', CAST(:executor_id AS text), 'attempt', k_lk.attempt,
                              'lease_expires_at', CAST(:expires_iso AS text))
    FROM k_lk JOIN k_ru ON k_ru.id = k_lk.run_id
    UNION ALL
    SELECT k_lk.run_id, k_ru.last_seq - k_ru.n * :k_per + (k_lk.k - 1) * :k_per + 2, {uuid}, 'PHASE_STARTED',
           k_lk.name, :now, 'info', k_lk.name || ' started (attempt ' || k_lk.attempt || ')',
           jsonb_build_object('executor_id', CAST(:executor_id AS text), 'attempt', k_lk.attempt)
    FROM k_lk JOIN k_ru ON k_ru.id = k_lk.run_id WHERE :k_start"""

# The columns of a claim, from a leased phase row ``{l}`` of a run row ``{r}``.
_CLAIM_COLUMNS = """
    {l}.run_id, {l}.name AS phase, {l}.type AS phase_type, {l}.attempt, {l}.max_attempts, {l}.lease_token,
    {l}.timeout_s, {l}.params,
    CASE WHEN {l}.run_id = ANY(CAST(:cached AS text[])) THEN NULL ELSE {r}.input_manifest END AS input_manifest,
    {r}.spec_slug, {r}.git_sha, {r}.environment, w.slug AS workspace, {r}.created_by,
    CASE WHEN {l}.idx = 0 THEN '{{}}'::jsonb ELSE coalesce((
        SELECT jsonb_object_agg(q.name, q.output_manifest) FROM phases q
        WHERE q.run_id = {l}.run_id AND q.idx < {l}.idx AND q.status = 'succeeded'), '{{}}'::jsonb){extra} END"""

_EVENT_INSERT = """
INSERT INTO run_events (run_id, seq, event_id, type, phase, ts, level, message, payload)
SELECT run_id, seq, event_id, type, phase, ts, level, message, payload FROM ({rows}) e
ON CONFLICT (run_id, event_id) DO NOTHING"""

_EXECUTOR_UPSERT = """
ex AS (
    INSERT INTO executors (id, capabilities, first_seen_at, last_seen_at, current_run_id, current_phase,
                           last_workspace_id)
    SELECT CAST(:executor_id AS text), CAST(:caps_json AS jsonb), :now, :now, cur.run_id, cur.name,
           (SELECT lr.workspace_id FROM runs lr WHERE lr.id = cur.run_id)
    FROM (SELECT NULL) one LEFT JOIN ({current}) cur ON true
    ON CONFLICT (id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, capabilities = EXCLUDED.capabilities,
        current_run_id = EXCLUDED.current_run_id, current_phase = EXCLUDED.current_phase,
        last_workspace_id = coalesce(EXCLUDED.last_workspace_id, executors.last_workspace_id)
)"""


def _claim_sql(run_filter: bool, scoped: bool) -> str:
    where = (" AND p.run_id = :run_id" if run_filter else "") + (f" AND p.{_WS}" if scoped else "")
    ctes = _CLAIM_CTES.format(caps=caps_store.claim_ctes(True, where), limit=":limit", token=_TOKEN,
                              hash=_HASH.format("k_l.lease_token"))
    current = "SELECT run_id, name FROM k_l ORDER BY available_at DESC, id DESC LIMIT 1"
    events = _EVENT_INSERT.format(rows=_CLAIM_EVENTS.format(uuid=_UUID_HEX))
    return (f"WITH {ctes},\nk_ev AS ({events}),\n{_EXECUTOR_UPSERT.format(current=current)},\n"
            f"notes AS (SELECT pg_notify('{EVENTS_CHANNEL}', id) FROM k_ru)\n"
            f"SELECT {_CLAIM_COLUMNS.format(l='k_l', r='k_ru', extra='')} AS previous_outputs,\n"
            f"    (SELECT count(*) FROM notes) AS notified\n"
            f"FROM k_l JOIN k_ru ON k_ru.id = k_l.run_id JOIN workspaces w ON w.id = k_ru.workspace_id\n"
            f"ORDER BY k_l.available_at, k_l.id")


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def claim_set(conn: Connection, *, executor_id: str, capabilities: list[str], now: datetime, expires: datetime,
              limit: int, run_id: str | None, workspace_ids: Iterable[int] | None, start: bool,
              cached: Sequence[str] = ()) -> list[dict[str, Any]]:
    """PostgreSQL: lease, start and record up to ``limit`` runnable phases in ONE statement (see
    above); returns the claims (``input_manifest`` None for runs in ``cached``). SQLite: the same
    transitions as one read and one write per table (``_claim_set_sqlite``)."""
    if conn.dialect.name == "sqlite":
        return _claim_set_sqlite(conn, executor_id=executor_id, capabilities=capabilities, now=now, expires=expires,
                                 limit=limit, run_id=run_id, workspace_ids=workspace_ids, start=start, cached=cached)
    scoped = workspace_ids is not None
    stmt = _stmt(conn, f"claim_set:{run_id is not None}:{scoped}", lambda: text(_claim_sql(run_id is not None, scoped)))
    params: dict[str, Any] = {
        "caps": list(capabilities), "caps_json": _json(sorted(set(capabilities))), "now": now, "expires": expires,
        "expires_iso": expires.isoformat(), "executor_id": executor_id, "limit": limit, "run_id": run_id,
        "k_target": (PhaseStatus.RUNNING if start else PhaseStatus.CLAIMED).value, "k_start": start,
        "k_per": 2 if start else 1, "cached": list(cached), **caps_store.claim_params(now, limit),
    }
    if scoped:
        params["ws"] = sorted(workspace_ids or ())
    rows = conn.execute(stmt, params).mappings().all()
    return [_claim_row(r) for r in rows]


def _claim_row(row: RowMapping) -> dict[str, Any]:
    keys = ("run_id", "phase", "phase_type", "attempt", "max_attempts", "lease_token", "timeout_s", "params",
            "input_manifest", "spec_slug", "git_sha", "environment", "workspace", "created_by", "previous_outputs")
    return {k: row[k] for k in keys}


# c_*: complete a batch of leased phases (compare-and-swap on (run_id, lease_token), unexpired,
# the workspace filter for bound executors), close their attempts, queue each run's next phase —
# or lease it to the completing executor (the chain hand-off) — finish runs with no next phase,
# and write every event with its sequence number.
_COMPLETE_CTES = """
it AS (
    SELECT * FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS t(i int, run_id text, lease_token text, manifest jsonb)
),
done AS (
    UPDATE phases p SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, finished_at = :now,
        output_manifest = it.manifest
    FROM it
    WHERE p.run_id = it.run_id AND p.lease_token = it.lease_token AND p.status IN ('claimed', 'running')
      AND (p.lease_expires_at IS NULL OR p.lease_expires_at >= :now) {filter}
    RETURNING p.id, p.run_id, p.idx, p.name, p.attempt, p.executor_id, it.i, it.manifest,
              extract(epoch FROM (CAST(:now AS timestamptz) - coalesce(p.started_at, p.claimed_at, :now))) AS took
),
c_att AS (
    UPDATE phase_attempts a SET status = 'succeeded', finished_at = :now, error = NULL
    FROM done WHERE a.phase_id = done.id AND a.attempt = done.attempt
),
nx AS (
    SELECT q.id, q.run_id, q.status, q.capability, done.i FROM phases q JOIN done ON q.run_id = done.run_id
    AND q.idx = done.idx + 1
),
hx AS (
    SELECT nx.id, row_number() OVER (ORDER BY nx.i) AS rk FROM nx
    WHERE nx.status = 'pending' AND nx.capability = ANY(CAST(:caps AS text[])) AND NOT {handoff_capped}
),
hand AS (
    UPDATE phases p SET status = 'running', attempt = p.attempt + 1, lease_token = {token},
        lease_expires_at = :expires, executor_id = :executor_id, claimed_at = :now, started_at = :now,
        available_at = :now, error = NULL
    FROM hx WHERE p.id = hx.id AND hx.rk <= :max_phases
    RETURNING p.id, p.run_id, p.idx, p.name, p.type, p.attempt, p.max_attempts, p.lease_token, p.timeout_s,
              p.params, p.available_at
),
h_att AS (
    INSERT INTO phase_attempts (phase_id, attempt, executor_id, lease_token_hash, status, claimed_at)
    SELECT id, attempt, :executor_id, {hash}, 'running', :now FROM hand
),
qd AS (
    UPDATE phases p SET status = 'queued', available_at = :now
    FROM nx WHERE p.id = nx.id AND nx.status = 'pending'
      AND p.id NOT IN (SELECT id FROM hx WHERE rk <= :max_phases)
    RETURNING p.id, p.run_id
),
ce AS (
    SELECT e.*, done.run_id, done.name, row_number() OVER (PARTITION BY e.i ORDER BY e.ord) AS k
    FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e(i int, ord int, event_id text, type text, phase text,
                                                         ts timestamptz, level text, message text, payload jsonb)
    JOIN done ON done.i = e.i
    WHERE NOT EXISTS (SELECT 1 FROM run_events x WHERE x.run_id = done.run_id AND x.event_id = e.event_id)
),
per AS (
    SELECT done.i, done.run_id, (SELECT count(*) FROM ce WHERE ce.i = done.i) AS n,
           nx.id IS NULL AS last, hand.id IS NOT NULL AS handed
    FROM done LEFT JOIN nx ON nx.run_id = done.run_id LEFT JOIN hand ON hand.run_id = done.run_id
),
c_ru AS (
    UPDATE runs r SET
        status = CASE WHEN per.last THEN 'succeeded' ELSE r.status END,
        finished_at = CASE WHEN per.last THEN CAST(:now AS timestamptz) ELSE r.finished_at END,
        last_seq = r.last_seq + per.n + 1 + CASE WHEN per.last THEN 1 ELSE 0 END
                   + CASE WHEN per.handed THEN 2 ELSE 0 END
    FROM per WHERE r.id = per.run_id
    RETURNING r.id, r.status, r.input_manifest, r.spec_slug, r.git_sha, r.environment, r.workspace_id, r.created_by,
              per.i, per.last, per.handed,
              r.last_seq - per.n - 1 - CASE WHEN per.last THEN 1 ELSE 0 END
                         - CASE WHEN per.handed THEN 2 ELSE 0 END AS base
)"""

_COMPLETE_EVENTS = """
    SELECT ce.run_id, c_ru.base + ce.k AS seq, ce.event_id, ce.type, coalesce(ce.phase, ce.name) AS phase,
           ce.ts, ce.level, ce.message, coalesce(ce.payload, '{{}}'::jsonb) AS payload
    FROM ce JOIN c_ru ON c_ru.i = ce.i
    UNION ALL
    SELECT done.run_id, c_ru.base + per.n + 1, {uuid}, 'PHASE_SUCCEEDED', done.name, :now, 'info',
           done.name || ' succeeded in ' || to_char(done.took, 'FM9999999990.000') || ' s',
           jsonb_build_object('attempt', done.attempt, 'duration_s', round(done.took, 6),
               'outputs', CASE WHEN jsonb_typeof(done.manifest -> 'outputs') = 'object' THEN coalesce(
                   (SELECT jsonb_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(done.manifest -> 'outputs') k),
                   '[]'::jsonb) END)
    FROM done JOIN c_ru ON c_ru.i = done.i JOIN per ON per.i = done.i
    UNION ALL
    SELECT c_ru.id, c_ru.base + per.n + 2, {uuid}, 'RUN_SUCCEEDED', NULL, :now, 'info', 'run succeeded', '{{}}'::jsonb
    FROM c_ru JOIN per ON per.i = c_ru.i WHERE per.last
    UNION ALL
    SELECT hand.run_id, c_ru.base + per.n + 2, {uuid}, 'PHASE_CLAIMED', hand.name, :now, 'info',
           hand.name || ' claimed by ' || CAST(:executor_id AS text),
           jsonb_build_object('executor_id', CAST(:executor_id AS text), 'attempt', hand.attempt,
                              'lease_expires_at', CAST(:expires_iso AS text))
    FROM hand JOIN c_ru ON c_ru.id = hand.run_id JOIN per ON per.i = c_ru.i
    UNION ALL
    SELECT hand.run_id, c_ru.base + per.n + 3, {uuid}, 'PHASE_STARTED', hand.name, :now, 'info',
           hand.name || ' started (attempt ' || hand.attempt || ')',
           jsonb_build_object('executor_id', CAST(:executor_id AS text), 'attempt', hand.attempt)
    FROM hand JOIN c_ru ON c_ru.id = hand.run_id JOIN per ON per.i = c_ru.i"""


# the phase completed in the same statement is not in its snapshot: its manifest comes from ``done``
_HANDED_PREVIOUS = (" || coalesce((SELECT jsonb_build_object(done.name, done.manifest) FROM done "
                    "WHERE done.run_id = hand.run_id), '{}'::jsonb)")


def _complete_sql(claim_next: bool, scoped: bool) -> str:
    ws = f" AND p.{_WS}" if scoped else ""
    ctes = _COMPLETE_CTES.format(filter=ws, token=_TOKEN, hash=_HASH.format("hand.lease_token"),
                                 handoff_capped=caps_store.HANDOFF_CAPPED_SQL)
    rows = _COMPLETE_EVENTS.format(uuid=_UUID_HEX)
    ru = "SELECT id FROM c_ru"
    if claim_next:  # the executor's further work, in the same statement (never a run completed here)
        limit = ("CASE WHEN EXISTS (SELECT 1 FROM done) "
                 "THEN greatest(:max_phases - (SELECT count(*) FROM hand), 0) ELSE 0 END")
        # the phases completed here are still leased in the statement's snapshot: not counted as used
        claim_caps = caps_store.claim_ctes(True, " AND p.run_id NOT IN (SELECT run_id FROM it)" + ws,
                                           use_filter=" AND u.id NOT IN (SELECT id FROM done)")
        ctes += "," + _CLAIM_CTES.format(caps=claim_caps, limit=limit, token=_TOKEN,
                                          hash=_HASH.format("k_l.lease_token"))
        rows += "\n    UNION ALL" + _CLAIM_EVENTS.format(uuid=_UUID_HEX)
        current = ("SELECT run_id, name FROM (SELECT run_id, name, 1 AS pri, available_at, id FROM k_l UNION ALL "
                   "SELECT run_id, name, 0, available_at, id FROM hand) x "
                   "ORDER BY pri DESC, available_at DESC, id DESC LIMIT 1")
        touch = _EXECUTOR_UPSERT.format(current=current)
        ru += " UNION SELECT id FROM k_ru"
    else:
        touch = ("ex AS (UPDATE executors e SET last_seen_at = :now, current_run_id = NULL, current_phase = NULL "
                 "WHERE e.id IN (SELECT executor_id FROM done))")
    claims = ""
    if claim_next:
        claims = (f"UNION ALL SELECT 'claim', CAST(NULL AS int), CAST(NULL AS text), CAST(NULL AS boolean), 0, "
                  f"{_CLAIM_COLUMNS.format(l='hand', r='c_ru', extra=_HANDED_PREVIOUS)}, (SELECT count(*) FROM notes)\n"
                  f"    FROM hand JOIN c_ru ON c_ru.id = hand.run_id JOIN workspaces w ON w.id = c_ru.workspace_id\n"
                  f"UNION ALL SELECT 'claim', CAST(NULL AS int), CAST(NULL AS text), CAST(NULL AS boolean), 1, "
                  f"{_CLAIM_COLUMNS.format(l='k_l', r='k_ru', extra='')}, (SELECT count(*) FROM notes)\n"
                  f"    FROM k_l JOIN k_ru ON k_ru.id = k_l.run_id JOIN workspaces w ON w.id = k_ru.workspace_id\n")
    nulls = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in (
        ("phase_type", "text"), ("attempt", "int"), ("max_attempts", "int"), ("lease_token", "text"),
        ("timeout_s", "float8"), ("params", "jsonb"), ("input_manifest", "jsonb"), ("spec_slug", "text"),
        ("git_sha", "text"), ("environment", "text"), ("workspace", "text"), ("created_by", "text"),
        ("previous_outputs", "jsonb")))
    return (f"WITH {ctes},\nc_ev AS ({_EVENT_INSERT.format(rows=rows)}),\n{touch},\n"
            f"notes AS (SELECT pg_notify('{EVENTS_CHANNEL}', id) FROM ({ru}) x\n"
            f"          UNION ALL SELECT pg_notify('{READY_CHANNEL}', '') FROM (SELECT 1 FROM qd LIMIT 1) y)\n"
            f"SELECT 'done' AS kind, done.i, c_ru.status AS run_status,\n"
            f"       EXISTS (SELECT 1 FROM qd WHERE qd.run_id = done.run_id) AS queued_next, 0 AS pri, "
            f"done.run_id, done.name AS phase, {nulls},\n"
            f"       (SELECT count(*) FROM notes)\n"
            f"FROM done JOIN c_ru ON c_ru.i = done.i\n{claims}")


def complete_set(conn: Connection, items: list[dict[str, Any]], events: list[dict[str, Any]], *, now: datetime,
                 expires: datetime, claim_next: dict[str, Any] | None, workspace_ids: Iterable[int] | None,
                 cached: Sequence[str] = ()) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """PostgreSQL: complete ``items`` ``[{i, run_id, lease_token, manifest}]`` (distinct runs) carrying
    ``events`` ``[{i, ord, event_id, type, phase, ts, level, message, payload}]``, hand each run's next
    phase to the ``claim_next`` executor when it can run it, and lease that executor's further work,
    in ONE statement. Returns ``{i: {run_status, phase, queued_next}}`` for the items completed (an
    item missing was not: its lease is not held) and the claims (hand-offs first). SQLite: the same
    as one read and one write per table (``_complete_set_sqlite``)."""
    if conn.dialect.name == "sqlite":
        return _complete_set_sqlite(conn, items, events, now=now, expires=expires, claim_next=claim_next,
                                    workspace_ids=workspace_ids, cached=cached)
    scoped = workspace_ids is not None
    want = claim_next is not None
    stmt = _stmt(conn, f"complete_set:{want}:{scoped}", lambda: text(_complete_sql(want, scoped)))
    caps = list(claim_next["capabilities"]) if claim_next else None
    params: dict[str, Any] = {
        "items": _json(items), "events": _json(events), "now": now, "expires": expires,
        "expires_iso": expires.isoformat(), "cached": list(cached), "caps": caps,
        "executor_id": claim_next["executor_id"] if claim_next else None,
        "max_phases": claim_next.get("max_phases", 1) if claim_next else 0,
    }
    if claim_next:
        params.update(caps_json=_json(sorted(set(caps or []))), k_target=PhaseStatus.RUNNING.value, k_start=True,
                      k_per=2, **caps_store.claim_params(now, int(params["max_phases"])))
    if scoped:
        params["ws"] = sorted(workspace_ids or ())
    done: dict[int, dict[str, Any]] = {}
    claims: list[tuple[int, dict[str, Any]]] = []
    for row in conn.execute(stmt, params).mappings():
        if row["kind"] == "done":
            done[row["i"]] = {"run_id": row["run_id"], "phase": row["phase"], "run_status": row["run_status"],
                              "queued_next": row["queued_next"]}
        else:
            claims.append((row["pri"], _claim_row(row)))
    claims.sort(key=lambda c: c[0])
    return done, [c for _, c in claims]


# --- the set-based hot path (SQLite) ----------------------------------------------------------
#
# SQLite has no data-modifying CTEs: one statement writes one table. The equivalent of claim_set /
# complete_set is one read of everything the transitions need (claim_ctes for the candidates, caps
# applied, fair order), the transitions computed here, then ONE statement per table written
# (executemany of prebuilt statements): phases, phase_attempts (an upsert: attempts closed and
# opened), runs, run_events, executors. The caller's ``BEGIN IMMEDIATE`` transaction holds the
# database's write lock from the read to the commit, so what the read saw (statuses, ``last_seq``)
# cannot change under the writes; every write is still a compare-and-swap on what was read.

_PHASE_SET = ("status", "attempt", "lease_token", "lease_expires_at", "executor_id", "claimed_at", "started_at",
              "available_at", "finished_at", "output_manifest", "error", "timeout_s")
_LEASED_SQL = ", ".join(f"'{s}'" for s in sorted(_LEASED))
_SUCCEEDED_SQL = f"'{PhaseStatus.SUCCEEDED.value}'"


def _prev_sql(row: str, idx: str) -> str:
    """The succeeded phases before ``{idx}`` of run ``{row}.run_id`` as one JSON object (text)."""
    return (f"(SELECT json_group_object(q.name, json(q.output_manifest)) FROM (SELECT name, output_manifest "
            f"FROM phases q WHERE q.run_id = {row}.run_id AND q.idx < {idx} AND q.status = {_SUCCEEDED_SQL} "
            f"ORDER BY q.idx) q)")


def _typed(name: str) -> Any:
    """The result column ``name`` of the SQLite reads with its table type (``r_``: runs, ``nx_``: phases)."""
    if name.startswith("r_") and name[2:] in runs.c:
        return column(name, runs.c[name[2:]].type)
    if name.startswith("nx_") and name[3:] in phases.c:
        return column(name, phases.c[name[3:]].type)
    if name in phases.c:
        return column(name, phases.c[name].type)
    kinds: dict[str, Any] = {"cap_timeout": Float(), "r_workspace": String(), "prev": Text(), "seen": Text(),
                             "capped": Integer(), "r_input_manifest": JSONDoc()}
    return column(name, kinds[name])


_RUN_COLS = ("status", "last_seq", "started_at", "finished_at", "workspace_id")
_CONTEXT_COLS = ("spec_slug", "git_sha", "environment", "created_by")


def _sqlite_candidates_stmt(run_filter: bool, scoped: bool, exclude: bool) -> Any:
    """The claim's read: runnable phases (caps applied, fair order, ``cap_timeout``) with what a
    claim carries of their runs. ``exclude`` (complete + claim_next): not the runs being completed,
    and their phases, still leased in this read, not counted as using a cap."""
    where = ((" AND p.run_id = :run_id" if run_filter else "") + (" AND r.workspace_id IN :ws" if scoped else "")
             + (" AND p.run_id NOT IN (SELECT value FROM json_each(:exclude))" if exclude else ""))
    use_filter = " AND u.id NOT IN (SELECT value FROM json_each(:done_ids))" if exclude else ""
    names = [c.name for c in phases.c]
    cols = ", ".join(f"p.{c}" for c in names)
    run_cols = ", ".join(f"r.{c} AS r_{c}" for c in (*_RUN_COLS, *_CONTEXT_COLS))
    sql = (f"WITH {caps_store.claim_ctes(False, where, use_filter)}\n"
           f"SELECT {cols}, k_t.cap_timeout, {run_cols}, w.slug AS r_workspace,\n"
           f"    CASE WHEN p.run_id IN (SELECT value FROM json_each(:cached)) THEN NULL\n"
           f"         ELSE r.input_manifest END AS r_input_manifest,\n"
           f"    CASE WHEN p.idx = 0 THEN '{{}}' ELSE {_prev_sql('p', 'p.idx')} END AS prev\n"
           "FROM phases p JOIN k_t ON k_t.id = p.id JOIN runs r ON r.id = p.run_id\n"
           "JOIN workspaces w ON w.id = r.workspace_id\n"
           "WHERE p.id NOT IN (SELECT id FROM k_x)\n"
           "ORDER BY k_t.fair, k_t.turn, k_t.available_at, k_t.id LIMIT :limit")
    out = [*names, "cap_timeout", *(f"r_{c}" for c in (*_RUN_COLS, *_CONTEXT_COLS)), "r_workspace",
           "r_input_manifest", "prev"]
    binds = [bindparam("caps", expanding=True), bindparam("now", type_=UTCDateTime()),
             bindparam("day_start", type_=UTCDateTime())]
    if scoped:
        binds.append(bindparam("ws", expanding=True))
    return text(sql).bindparams(*binds).columns(*(_typed(n) for n in out))


def _sqlite_leased_stmt(want: bool) -> Any:
    """The complete's read: the leased phases of the runs named, each with its run, its next phase,
    and which of the call's event ids its trail already holds; ``want`` (claim_next) adds what a
    hand-off needs: the run's context, whether a cap bears on the next phase, previous outputs."""
    names = ["id", "run_id", "idx", "name", *_PHASE_SET]
    nx_names = ["id", "idx", "name", "type", "capability", "max_attempts", "params", *_PHASE_SET]
    cols = [f"p.{c}" for c in names] + [f"r.{c} AS r_{c}" for c in _RUN_COLS]
    cols += [f"nx.{c} AS nx_{c}" for c in nx_names]
    cols.append("(SELECT json_group_array(x.event_id) FROM run_events x WHERE x.run_id = p.run_id "
                "AND x.event_id IN (SELECT value FROM json_each(:event_ids))) AS seen")
    out = [*names, *(f"r_{c}" for c in _RUN_COLS), *(f"nx_{c}" for c in nx_names), "seen"]
    if want:
        capped = caps_store.match_sql("c", "r.workspace_id", "r.spec_slug", "nx.capability", ":executor_id")
        cols += [f"r.{c} AS r_{c}" for c in _CONTEXT_COLS]
        cols += ["(SELECT w.slug FROM workspaces w WHERE w.id = r.workspace_id) AS r_workspace",
                 "CASE WHEN r.id IN (SELECT value FROM json_each(:cached)) THEN NULL ELSE r.input_manifest END "
                 "AS r_input_manifest",
                 f"EXISTS (SELECT 1 FROM caps c WHERE {capped} AND (c.max_concurrent IS NOT NULL "
                 "OR c.runtime_s_per_day IS NOT NULL OR c.max_phase_timeout_s IS NOT NULL)) AS capped",
                 f"{_prev_sql('nx', 'nx.idx')} AS prev"]
        out += [*(f"r_{c}" for c in _CONTEXT_COLS), "r_workspace", "r_input_manifest", "capped", "prev"]
    sql = (f"SELECT {', '.join(cols)}\nFROM phases p JOIN runs r ON r.id = p.run_id\n"
           "LEFT JOIN phases nx ON nx.run_id = p.run_id AND nx.idx = p.idx + 1\n"
           f"WHERE p.run_id IN :run_ids AND p.status IN ({_LEASED_SQL})")
    return text(sql).bindparams(bindparam("run_ids", expanding=True)).columns(*(_typed(n) for n in out))


def _sqlite_writes(conn: Connection) -> dict[str, Any]:
    """The prebuilt write statements of the SQLite set path, one per table."""
    def build() -> dict[str, Any]:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        attempt = sqlite_insert(phase_attempts)
        ex = sqlite_insert(executors)
        return {
            "phases": update(phases).where(phases.c.id == bindparam("_id"), phases.c.status == bindparam("_was"))
            .values({c: bindparam(f"v_{c}", type_=phases.c[c].type) for c in _PHASE_SET}),
            "attempts": attempt.on_conflict_do_update(
                index_elements=["phase_id", "attempt"],
                set_={"status": attempt.excluded.status, "finished_at": attempt.excluded.finished_at,
                      "error": attempt.excluded.error}),
            "runs": update(runs).where(runs.c.id == bindparam("_id"), runs.c.last_seq == bindparam("_seq"))
            .values({c: bindparam(f"v_{c}", type_=runs.c[c].type)
                     for c in ("status", "started_at", "finished_at", "last_seq")}),
            "events": run_events.insert(),
            "executor": ex.on_conflict_do_update(index_elements=["id"], set_={
                "last_seen_at": ex.excluded.last_seen_at, "capabilities": ex.excluded.capabilities,
                "current_run_id": ex.excluded.current_run_id, "current_phase": ex.excluded.current_phase,
                "last_workspace_id": func.coalesce(ex.excluded.last_workspace_id, executors.c.last_workspace_id)}),
            "touch": update(executors).where(executors.c.id.in_(bindparam("ids", expanding=True))).values(
                last_seen_at=bindparam("now", type_=UTCDateTime()), current_run_id=None, current_phase=None),
        }

    return _stmt(conn, "sqlite_writes", build)  # type: ignore[no-any-return]


class _SqliteBatch:
    """The writes of one SQLite set-based call, collected, then sent as one statement per table."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.phases: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def run(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        """The run of ``row`` (its ``r_*`` columns) as this call leaves it."""
        run = self.runs.get(row["run_id"])
        if run is None:
            run = self.runs[row["run_id"]] = {
                "_id": row["run_id"], "_seq": row["r_last_seq"], "v_status": row["r_status"],
                "v_started_at": row["r_started_at"], "v_finished_at": row["r_finished_at"],
                "v_last_seq": row["r_last_seq"]}
        return run

    def event(self, run: dict[str, Any], type_: str, message: str, phase: str | None, *, event_id: str | None = None,
              ts: datetime | None = None, level: str = "info", payload: Any = None) -> None:
        run["v_last_seq"] += 1
        self.events.append({"run_id": run["_id"], "seq": run["v_last_seq"], "event_id": event_id or new_event_id(),
                            "type": type_, "phase": phase, "ts": ts or self.now, "level": level, "message": message,
                            "payload": {} if payload is None else payload})

    def phase(self, row: Mapping[Any, Any], prefix: str, target: PhaseStatus, **changes: Any) -> None:
        phase_transition(row[f"{prefix}status"], target)
        values = {f"v_{c}": row[f"{prefix}{c}"] for c in _PHASE_SET}
        values.update({f"v_{c}": v for c, v in changes.items()}, v_status=target.value)
        self.phases.append({"_id": row[f"{prefix}id"], "_was": row[f"{prefix}status"], **values})

    def lease(self, row: Mapping[Any, Any], prefix: str, *, executor_id: str, expires: datetime, start: bool,
              timeout_s: float | None) -> tuple[int, str]:
        """Lease a queued phase ``row`` (columns after ``prefix``); returns its attempt and token."""
        target = PhaseStatus.RUNNING if start else PhaseStatus.CLAIMED
        attempt = int(row[f"{prefix}attempt"]) + 1
        token = secrets.token_urlsafe(24)
        self.phase(row, prefix, target, attempt=attempt, lease_token=token, lease_expires_at=expires,
                   executor_id=executor_id, claimed_at=self.now, started_at=self.now if start else None, error=None,
                   timeout_s=timeout_s)
        self.attempts.append({"phase_id": row[f"{prefix}id"], "attempt": attempt, "executor_id": executor_id,
                              "lease_token_hash": hashlib.sha256(token.encode()).hexdigest(),
                              "status": target.value, "claimed_at": self.now, "finished_at": None, "error": None})
        run = self.run(row)
        if run["v_status"] == RunStatus.QUEUED.value:
            run["v_status"] = run_transition(run["v_status"], RunStatus.RUNNING).value
            run["v_started_at"] = self.now
            self.event(run, EventType.RUN_STARTED.value, "run started", None)
        name = row[f"{prefix}name"]
        self.event(run, EventType.PHASE_CLAIMED.value, f"{name} claimed by {executor_id}", name,
                   payload={"executor_id": executor_id, "attempt": attempt, "lease_expires_at": expires.isoformat()})
        if start:
            self.event(run, EventType.PHASE_STARTED.value, f"{name} started (attempt {attempt})", name,
                       payload={"executor_id": executor_id, "attempt": attempt})
        return attempt, token

    def flush(self, conn: Connection) -> None:
        w = _sqlite_writes(conn)
        if self.phases and conn.execute(w["phases"], self.phases).rowcount != len(self.phases):
            raise RuntimeError("a phase changed under the write lock")
        if self.attempts:
            conn.execute(w["attempts"], self.attempts)
        changed = list(self.runs.values())
        if changed and conn.execute(w["runs"], changed).rowcount != len(changed):
            raise RuntimeError("a run changed under the write lock")
        if self.events:
            conn.execute(w["events"], self.events)


def _claim_of(row: Mapping[Any, Any], prefix: str, attempt: int, token: str, timeout_s: float | None,
              previous: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": row["run_id"], "phase": row[f"{prefix}name"], "phase_type": row[f"{prefix}type"],
            "attempt": attempt, "max_attempts": row[f"{prefix}max_attempts"], "lease_token": token,
            "timeout_s": timeout_s, "params": row[f"{prefix}params"], "input_manifest": row["r_input_manifest"],
            "spec_slug": row["r_spec_slug"], "git_sha": row["r_git_sha"], "environment": row["r_environment"],
            "workspace": row["r_workspace"], "created_by": row["r_created_by"], "previous_outputs": previous}


def _sqlite_claims(conn: Connection, batch: _SqliteBatch, *, executor_id: str, capabilities: list[str],
                   expires: datetime, limit: int, run_id: str | None, workspace_ids: Iterable[int] | None, start: bool,
                   cached: Sequence[str], exclude: Sequence[str] | None = None, done_ids: Sequence[int] = ()
                   ) -> list[tuple[dict[str, Any], int]]:
    """Read the candidates and lease them in ``batch``; returns (claim, workspace id) in fair order."""
    if not capabilities or limit <= 0:
        return []
    scoped = workspace_ids is not None
    key = f"sqlite_candidates:{run_id is not None}:{scoped}:{exclude is not None}"
    stmt = _stmt(conn, key, lambda: _sqlite_candidates_stmt(run_id is not None, scoped, exclude is not None))
    params: dict[str, Any] = {"caps": list(capabilities), "executor_id": executor_id, "now": batch.now, "limit": limit,
                              "cached": _json(list(cached)), **caps_store.claim_params(batch.now, limit)}
    if run_id is not None:
        params["run_id"] = run_id
    if scoped:
        params["ws"] = sorted(workspace_ids or ())
    if exclude is not None:
        params.update(exclude=_json(list(exclude)), done_ids=_json(list(done_ids)))
    out = []
    for row in conn.execute(stmt, params).mappings():
        timeout, cap = row["timeout_s"], row["cap_timeout"]
        if cap is not None and (timeout is None or timeout > cap):
            timeout = cap
        attempt, token = batch.lease(row, "", executor_id=executor_id, expires=expires, start=start, timeout_s=timeout)
        out.append((_claim_of(row, "", attempt, token, timeout, orjson.loads(row["prev"])), row["r_workspace_id"]))
    return out


def _touch_sqlite(conn: Connection, executor_id: str, capabilities: list[str], now: datetime,
                  current: tuple[dict[str, Any], int] | None) -> None:
    """Register / refresh the executor, its current phase and the workspace it was last served."""
    conn.execute(_sqlite_writes(conn)["executor"], {
        "id": executor_id, "capabilities": sorted(set(capabilities)), "first_seen_at": now, "last_seen_at": now,
        "current_run_id": current[0]["run_id"] if current else None,
        "current_phase": current[0]["phase"] if current else None,
        "last_workspace_id": current[1] if current else None})


def _claim_set_sqlite(conn: Connection, *, executor_id: str, capabilities: list[str], now: datetime,
                      expires: datetime, limit: int, run_id: str | None, workspace_ids: Iterable[int] | None,
                      start: bool, cached: Sequence[str]) -> list[dict[str, Any]]:
    batch = _SqliteBatch(now)
    claims = _sqlite_claims(conn, batch, executor_id=executor_id, capabilities=capabilities, expires=expires,
                            limit=limit, run_id=run_id, workspace_ids=workspace_ids, start=start, cached=cached)
    batch.flush(conn)
    _touch_sqlite(conn, executor_id, capabilities, now, claims[-1] if claims else None)
    return [c for c, _ in claims]


def _complete_set_sqlite(conn: Connection, items: list[dict[str, Any]], events: list[dict[str, Any]], *,
                         now: datetime, expires: datetime, claim_next: dict[str, Any] | None,
                         workspace_ids: Iterable[int] | None, cached: Sequence[str]
                         ) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    want = claim_next is not None
    leased: dict[str, list[RowMapping]] = {}
    if items:
        params: dict[str, Any] = {"run_ids": sorted({it["run_id"] for it in items}),
                                  "event_ids": _json(sorted({e["event_id"] for e in events})),
                                  "cached": _json(list(cached)),
                                  "executor_id": claim_next["executor_id"] if claim_next else None}
        for found in conn.execute(_stmt(conn, f"sqlite_leased:{want}", lambda: _sqlite_leased_stmt(want)),
                                  params).mappings():
            leased.setdefault(found["run_id"], []).append(found)
    ws = None if workspace_ids is None else set(workspace_ids)
    by_item: dict[int, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: (e["i"], e["ord"])):
        by_item.setdefault(e["i"], []).append(e)
    batch = _SqliteBatch(now)
    done: dict[int, dict[str, Any]] = {}
    handed: list[tuple[dict[str, Any], int]] = []
    taker = claim_next["executor_id"] if claim_next else ""
    can = set(claim_next["capabilities"]) if claim_next else set()
    max_phases = int(claim_next.get("max_phases", 1)) if claim_next else 0
    done_executors: set[str] = set()
    done_ids: list[int] = []
    for it in items:
        row = next((r for r in leased.get(it["run_id"], ()) if r["lease_token"] == it["lease_token"]), None)
        if row is None or (row["lease_expires_at"] is not None and row["lease_expires_at"] < now) or (
                ws is not None and row["r_workspace_id"] not in ws):
            continue
        run, name, manifest = batch.run(row), row["name"], it["manifest"]
        seen = set(orjson.loads(row["seen"] or "[]"))
        for e in by_item.get(it["i"], ()):
            if e["event_id"] not in seen:
                seen.add(e["event_id"])
                batch.event(run, e["type"], e["message"], e["phase"] or name, event_id=e["event_id"], ts=e["ts"],
                            level=e["level"], payload=e["payload"])
        batch.phase(row, "", PhaseStatus.SUCCEEDED, lease_token=None, lease_expires_at=None, finished_at=now,
                    output_manifest=manifest)
        batch.attempts.append({"phase_id": row["id"], "attempt": row["attempt"], "executor_id": row["executor_id"],
                               "lease_token_hash": hashlib.sha256(str(row["lease_token"]).encode()).hexdigest(),
                               "status": PhaseStatus.SUCCEEDED.value, "claimed_at": row["claimed_at"] or now,
                               "finished_at": now, "error": None})
        done_ids.append(row["id"])
        if row["executor_id"]:
            done_executors.add(row["executor_id"])
        took = (now - (row["started_at"] or row["claimed_at"] or now)).total_seconds()
        outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
        batch.event(run, EventType.PHASE_SUCCEEDED.value, f"{name} succeeded in {took:.3f} s", name, payload={
            "attempt": row["attempt"], "duration_s": round(took, 6),
            "outputs": sorted(outputs) if isinstance(outputs, dict) else None})
        last = row["nx_id"] is None
        queued_next = False
        if last:
            run["v_status"] = run_transition(run["v_status"], RunStatus.SUCCEEDED).value
            run["v_finished_at"] = now
            batch.event(run, EventType.RUN_SUCCEEDED.value, "run succeeded", None)
        elif row["nx_status"] == PhaseStatus.PENDING.value:
            phase_transition(row["nx_status"], PhaseStatus.QUEUED)
            if want and row["nx_capability"] in can and not row["capped"] and len(handed) < max_phases:
                queued = {**row, "nx_status": PhaseStatus.QUEUED.value}
                attempt, token = batch.lease(queued, "nx_", executor_id=taker, expires=expires, start=True,
                                             timeout_s=row["nx_timeout_s"])
                batch.phases[-1]["v_available_at"] = now
                batch.phases[-1]["_was"] = row["nx_status"]
                previous = {**orjson.loads(row["prev"]), name: manifest}
                handed.append((_claim_of(row, "nx_", attempt, token, row["nx_timeout_s"], previous),
                               row["r_workspace_id"]))
            else:
                batch.phase(row, "nx_", PhaseStatus.QUEUED, available_at=now)
                queued_next = True
        done[it["i"]] = {"run_id": row["run_id"], "phase": name, "run_status": run["v_status"],
                         "queued_next": queued_next}
    more: list[tuple[dict[str, Any], int]] = []
    if claim_next is not None and done:
        more = _sqlite_claims(conn, batch, executor_id=taker, capabilities=list(claim_next["capabilities"]),
                              expires=expires, limit=max_phases - len(handed), run_id=None,
                              workspace_ids=workspace_ids, start=True, cached=cached,
                              exclude=[it["run_id"] for it in items],
                              done_ids=done_ids)
    batch.flush(conn)
    if claim_next is not None:
        taken = more or handed
        _touch_sqlite(conn, taker, list(claim_next["capabilities"]), now, taken[-1] if taken else None)
    elif done_executors:
        conn.execute(_sqlite_writes(conn)["touch"], {"ids": sorted(done_executors), "now": now})
    return done, [c for c, _ in handed + more]
