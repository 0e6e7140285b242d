"""Statements of runtime caps (services/caps.py keeps the rules) and the cap part of the claim.

Usage is never a counter: the claim statement (store/queue.py) derives it from the phases table
(leased phases) and phase_attempts (today's runtime) in the statement that leases, so an expired
lease or a cancel frees its slot in the transaction that records it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, func, select, text, update

from lakehouse.domain.caps import ScopeKind
from lakehouse.domain.states import PHASE_LEASED, PhaseStatus, RunStatus
from lakehouse.store.scope import visible
from lakehouse.store.tables import caps, held_runs, phases, runs
from lakehouse.store.types import UTCDateTime

CAPS_LOCK_KEY = 0x6C68_6361_7073  # pg_advisory_xact_lock key serialising capped claims ("lhcaps")
_LEASED_SQL = ", ".join(f"'{s.value}'" for s in sorted(PHASE_LEASED))
_QUEUED = PhaseStatus.QUEUED.value


# --- the claim's cap check (SQL shared by both dialects) --------------------------------------

def match_sql(c: str, ws: str, slug: str, cap: str, ex: str) -> str:
    """Does cap row ``c`` scope work of workspace ``ws``, spec slug ``slug``, capability ``cap``,
    executor ``ex`` (SQL expressions)?"""
    return (f"({c}.workspace_id = {ws} AND ({c}.scope_kind = '{ScopeKind.WORKSPACE.value}'"
            f" OR ({c}.scope_kind = '{ScopeKind.PIPELINE.value}' AND {c}.scope_value = {slug})"
            f" OR ({c}.scope_kind = '{ScopeKind.CAPABILITY.value}' AND {c}.scope_value = {cap})"
            f" OR ({c}.scope_kind = '{ScopeKind.EXECUTOR.value}' AND {c}.scope_value = {ex})))")


def _sum_secs(pg: bool, end: str, start: str) -> str:
    """SQL: the sum of ``end - start`` over the group, in seconds (PostgreSQL adds intervals and
    converts once: ``extract`` per row is numeric arithmetic, the costliest part of the sum)."""
    if pg:
        return f"coalesce(extract(epoch FROM sum({end} - {start}))::float8, 0)"
    return f"coalesce(sum((julianday({end}) - julianday({start})) * 86400.0), 0)"


def _secs(pg: bool, end: str, start: str) -> str:
    if pg:
        return f"extract(epoch FROM ({end} - {start}))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def _k_use(use_filter: str) -> str:
    """k_use: leased phases by (workspace, slug, capability, executor) — usage derived from the phases."""
    return f"""k_use AS MATERIALIZED (
    SELECT r.workspace_id AS ws, r.spec_slug AS slug, u.capability AS cap, u.executor_id AS ex, count(*) AS n
    FROM phases u JOIN runs r ON r.id = u.run_id
    WHERE u.status IN ({_LEASED_SQL}){use_filter}
    GROUP BY r.workspace_id, r.spec_slug, u.capability, u.executor_id
)"""


def usage_ctes(pg: bool, use_filter: str = "") -> str:
    """k_use: leased phases by (workspace, slug, capability, executor); k_spent: today's attempt
    seconds by the same keys (only computed when some cap has a daily budget)."""
    now = "CAST(:now AS timestamptz)" if pg else ":now"
    day = "CAST(:day_start AS timestamptz)" if pg else ":day_start"
    greatest = "greatest" if pg else "max"
    spent = _secs(pg, f"coalesce(a.finished_at, {now})", f"{greatest}(a.claimed_at, {day})")
    return f"""
{_k_use(use_filter)},
k_spent AS MATERIALIZED (
    SELECT r.workspace_id AS ws, r.spec_slug AS slug, u.capability AS cap, a.executor_id AS ex, sum({spent}) AS s
    FROM phase_attempts a JOIN phases u ON u.id = a.phase_id JOIN runs r ON r.id = u.run_id
    WHERE (a.finished_at IS NULL OR a.finished_at > {day}) AND a.claimed_at < {now}
      AND EXISTS (SELECT 1 FROM caps b WHERE b.runtime_s_per_day IS NOT NULL)
    GROUP BY r.workspace_id, r.spec_slug, u.capability, a.executor_id
)"""


def claim_ctes(pg: bool, run_filter: str, use_filter: str = "") -> str:
    """The candidate CTEs of a claim: k_cap (the caps that bear on this executor, with their usage),
    k_full (those reached), k_q (runnable phases not behind a full cap), k_t (those in fair order: a
    workspace's n-th waiting phase ranks n + its leased phases, so a flood in one workspace cannot
    starve another; ties go to the workspaces after the one this executor served last, in turn; the
    first ``:window``, each with ``cap_timeout``, the lowest ``max_phase_timeout_s`` on it), k_x
    (candidates that would take a concurrency cap past its limit within this claim). ``run_filter``
    is SQL on ``p`` (phase) and, on SQLite only, ``r`` (run).

    What it costs (docs/benchmarks.md, runtime caps): usage once per statement — leased phases
    (k_use) and, only while a budget bears on this executor, today's attempt seconds: first summed
    over the whole install from phase_attempts alone (k_all, no join), which bounds every cap's
    spending; only when that total reaches the smallest budget are they grouped by scope (k_spent:
    a phase lookup per attempt, of the workspaces with a budget; a run lookup only when a pipeline
    has a budget). Each cap looks at its own workspace's usage groups only. Per candidate: nothing
    while no cap is full (an init-plan guard); a workspace whose workspace or executor cap is full,
    or whose every capability asked for is capped full, is not probed at all. After the fair order
    (``:window`` rows): the timeout caps and only the concurrency caps this claim could push past
    their limit (``used + :k_limit > max``), joined on the workspace."""
    caps_in = "= ANY(CAST(:caps AS text[]))" if pg else "IN :caps"
    ex = "CAST(:executor_id AS text)" if pg else ":executor_id"
    now = "CAST(:now AS timestamptz)" if pg else ":now"
    day = "CAST(:day_start AS timestamptz)" if pg else ":day_start"
    greatest = "greatest" if pg else "max"
    spent = _sum_secs(pg, f"coalesce(a.finished_at, {now})", f"{greatest}(a.claimed_at, {day})")
    ws_kind, ex_kind = ScopeKind.WORKSPACE.value, ScopeKind.EXECUTOR.value
    cap_kind, pipe_kind = ScopeKind.CAPABILITY.value, ScopeKind.PIPELINE.value
    m_g = match_sql("c", "g.ws", "g.slug", "g.cap", "g.ex")
    m_t = match_sql("c", "t.ws", "t.slug", "t.cap", ex)
    last = f"(SELECT e.last_workspace_id FROM executors e WHERE e.id = {ex})"
    if pg:
        # no run lookup per candidate: the workspace is on the phase, the spec slug (pipeline caps)
        # is read only for a full pipeline cap of the candidate's workspace, and for the ranked rows
        slug_q = "(SELECT r.spec_slug FROM runs r WHERE r.id = p.run_id)"
        m_q = match_sql("c", "p.workspace_id", slug_q, "p.capability", ex)
        runnable = f"""
        SELECT p.id, p.available_at, p.workspace_id AS ws, p.run_id, p.capability AS cap
        FROM phases p
        WHERE p.status = '{_QUEUED}' AND p.capability {caps_in} AND p.available_at <= {now}{run_filter}
          AND (NOT EXISTS (SELECT 1 FROM k_full) OR NOT EXISTS (SELECT 1 FROM k_full c WHERE {m_q}))"""
        # each workspace's oldest ``:window`` runnable phases, one probe of ix_phases_ws_claimable
        # per workspace, so a claim costs O(workspaces x window), not O(queue); the fair order below
        # only needs each workspace's head. A workspace that a full cap closes (its workspace cap,
        # this executor's cap, or a cap on every capability asked for) is not probed: its queue
        # would be read to the end for nothing.
        k_q = (f"SELECT q.* FROM workspaces w CROSS JOIN LATERAL ({runnable} AND p.workspace_id = w.id\n"
               f"        ORDER BY p.available_at, p.id LIMIT :window) q\n"
               f"    WHERE NOT EXISTS (SELECT 1 FROM k_full f WHERE f.workspace_id = w.id\n"
               f"                      AND f.scope_kind IN ('{ws_kind}', '{ex_kind}'))\n"
               f"      AND EXISTS (SELECT 1 FROM unnest(CAST(:caps AS text[])) x(v) WHERE NOT EXISTS (\n"
               f"          SELECT 1 FROM k_full f WHERE f.workspace_id = w.id AND f.scope_kind = '{cap_kind}'\n"
               f"          AND f.scope_value = x.v))")
        k_os = ("SELECT t.*, CASE WHEN EXISTS (SELECT 1 FROM k_cap) THEN (SELECT r.spec_slug FROM runs r "
                "WHERE r.id = t.run_id) END AS slug FROM k_o t")
    else:  # SQLite (one process, small queues) ranks every runnable phase
        m_q = match_sql("c", "r.workspace_id", "r.spec_slug", "p.capability", ex)
        k_q = f"""
        SELECT p.id, p.available_at, r.workspace_id AS ws, p.run_id, p.capability AS cap, r.spec_slug AS slug
        FROM phases p JOIN runs r ON r.id = p.run_id
        WHERE p.status = '{_QUEUED}' AND p.capability {caps_in} AND p.available_at <= {now}{run_filter}
          AND (NOT EXISTS (SELECT 1 FROM k_full) OR NOT EXISTS (SELECT 1 FROM k_full c WHERE {m_q}))"""
        k_os = "SELECT * FROM k_o"
    mine = f"(c.scope_kind <> '{ex_kind}' OR c.scope_value = {ex})"
    return f"""
{_k_use(use_filter)},
k_bud AS MATERIALIZED (
    SELECT c.workspace_id AS ws, max(CASE WHEN c.scope_kind = '{pipe_kind}' THEN 1 ELSE 0 END) AS by_slug,
           min(c.runtime_s_per_day) AS least_budget
    FROM caps c WHERE c.runtime_s_per_day IS NOT NULL AND {mine}
    GROUP BY c.workspace_id
),
k_all AS MATERIALIZED (
    SELECT {spent} AS s FROM phase_attempts a
    WHERE (a.finished_at IS NULL OR a.finished_at > {day}) AND a.claimed_at < {now} AND EXISTS (SELECT 1 FROM k_bud)
),
k_spent AS MATERIALIZED (
    SELECT u.workspace_id AS ws,
           CASE WHEN (SELECT max(b.by_slug) FROM k_bud b) = 1
                THEN (SELECT r.spec_slug FROM runs r WHERE r.id = u.run_id) END AS slug,
           u.capability AS cap, a.executor_id AS ex, {spent} AS s
    FROM phase_attempts a JOIN phases u ON u.id = a.phase_id
    WHERE (a.finished_at IS NULL OR a.finished_at > {day}) AND a.claimed_at < {now}
      AND (SELECT k_all.s FROM k_all) >= (SELECT min(b.least_budget) FROM k_bud b)
      AND u.workspace_id IN (SELECT b.ws FROM k_bud b)
    GROUP BY 1, 2, 3, 4
),
k_cap AS MATERIALIZED (
    SELECT c.id, c.workspace_id, c.scope_kind, c.scope_value, c.max_concurrent, c.runtime_s_per_day,
           c.max_phase_timeout_s,
           CASE WHEN c.max_concurrent IS NULL THEN 0
                ELSE coalesce((SELECT sum(g.n) FROM k_use g WHERE {m_g}), 0) END AS used,
           CASE WHEN c.runtime_s_per_day IS NULL THEN 0
                ELSE coalesce((SELECT sum(g.s) FROM k_spent g WHERE {m_g}), 0) END AS spent
    FROM caps c
    WHERE (c.max_concurrent IS NOT NULL OR c.runtime_s_per_day IS NOT NULL OR c.max_phase_timeout_s IS NOT NULL)
      AND {mine}
),
k_full AS MATERIALIZED (
    SELECT * FROM k_cap c
    WHERE (c.max_concurrent IS NOT NULL AND c.used >= c.max_concurrent)
       OR (c.runtime_s_per_day IS NOT NULL AND c.spent >= c.runtime_s_per_day)
),
k_wl AS (SELECT g.ws, sum(g.n) AS n FROM k_use g GROUP BY g.ws),
k_q AS ({k_q}),
k_o AS MATERIALIZED (
    SELECT f.*, CASE WHEN {last} IS NULL THEN 0 WHEN f.ws > {last} THEN f.ws - {last}
                     ELSE f.ws - {last} + 1000000000000 END AS turn
    FROM (
        SELECT k_q.*, row_number() OVER (PARTITION BY k_q.ws ORDER BY k_q.available_at, k_q.id)
               + coalesce(k_wl.n, 0) AS fair
        FROM k_q LEFT JOIN k_wl ON k_wl.ws = k_q.ws) f
    ORDER BY fair, turn, f.available_at, f.id
    LIMIT :window
),
k_os AS MATERIALIZED ({k_os}),
k_tmo AS (
    SELECT t.id, min(c.max_phase_timeout_s) AS cap_timeout
    FROM k_os t JOIN k_cap c ON c.max_phase_timeout_s IS NOT NULL AND {m_t}
    GROUP BY t.id
),
k_t AS MATERIALIZED (
    SELECT t.*, k_tmo.cap_timeout FROM k_os t LEFT JOIN k_tmo ON k_tmo.id = t.id
),
k_x AS (
    SELECT y.id FROM (
        SELECT t.id, c.max_concurrent,
               c.used + row_number() OVER (PARTITION BY c.id ORDER BY t.fair, t.turn, t.available_at, t.id) AS would
        FROM k_t t JOIN k_cap c ON c.max_concurrent IS NOT NULL AND c.used + :k_limit > c.max_concurrent
                                AND {m_t}) y
    WHERE y.would > y.max_concurrent
)"""


def window(limit: int) -> int:
    """How many fair-ordered candidates a claim of ``limit`` looks at (room for SKIP LOCKED)."""
    return limit * 4 + 64


def claim_params(now: datetime, limit: int) -> dict[str, Any]:
    from lakehouse.domain.caps import day_start

    # k_limit: the most phases the claim takes (a concurrency cap with more room than that cannot
    # be passed by it, so k_x leaves it out)
    return {"day_start": day_start(now), "window": window(limit), "k_limit": limit}


def has_concurrency_caps(conn: Connection) -> bool:
    return conn.execute(select(caps.c.id).where(caps.c.max_concurrent.is_not(None)).limit(1)).first() is not None


def handoff_capped(conn: Connection, workspace_id: int, spec_slug: str, capability: str, executor_id: str) -> bool:
    """Does any cap bear on this phase (the chain hand-off, which skips the claim's checks, is then
    not taken: the phase is queued and claimed through the capped claim)?"""
    stmt = select(caps.c.id).where(
        caps.c.workspace_id == workspace_id,
        (caps.c.scope_kind == ScopeKind.WORKSPACE.value)
        | ((caps.c.scope_kind == ScopeKind.PIPELINE.value) & (caps.c.scope_value == spec_slug))
        | ((caps.c.scope_kind == ScopeKind.CAPABILITY.value) & (caps.c.scope_value == capability))
        | ((caps.c.scope_kind == ScopeKind.EXECUTOR.value) & (caps.c.scope_value == executor_id)),
        caps.c.max_concurrent.is_not(None) | caps.c.runtime_s_per_day.is_not(None)
        | caps.c.max_phase_timeout_s.is_not(None)).limit(1)
    return conn.execute(stmt).first() is not None


# the same test in the set-based complete (PostgreSQL): ``nx`` is the next phase, ``:executor_id`` the taker
HANDOFF_CAPPED_SQL = (
    "EXISTS (SELECT 1 FROM caps c JOIN runs hr ON hr.id = nx.run_id WHERE "
    + match_sql("c", "hr.workspace_id", "hr.spec_slug", "nx.capability", "CAST(:executor_id AS text)")
    + " AND (c.max_concurrent IS NOT NULL OR c.runtime_s_per_day IS NOT NULL OR c.max_phase_timeout_s IS NOT NULL))")


# --- caps -------------------------------------------------------------------------------------

def list_caps(conn: Connection, workspace_ids: Collection[int] | None) -> list[RowMapping]:
    from lakehouse.store.tables import workspaces

    stmt = (select(caps, workspaces.c.slug.label("workspace"))
            .join(workspaces, workspaces.c.id == caps.c.workspace_id)
            .order_by(workspaces.c.slug, caps.c.scope_kind, caps.c.scope_value))
    stmt = visible(stmt, caps.c.workspace_id, workspace_ids)
    return list(conn.execute(stmt).mappings())


def get_cap(conn: Connection, cap_id: int) -> RowMapping | None:
    return conn.execute(select(caps).where(caps.c.id == cap_id)).mappings().first()


def find_cap(conn: Connection, workspace_id: int, scope_kind: str, scope_value: str) -> RowMapping | None:
    return conn.execute(select(caps).where(caps.c.workspace_id == workspace_id, caps.c.scope_kind == scope_kind,
                                           caps.c.scope_value == scope_value)).mappings().first()


def insert_cap(conn: Connection, **values: Any) -> int:
    return int(conn.execute(caps.insert().values(**values).returning(caps.c.id)).scalar_one())


def update_cap(conn: Connection, cap_id: int, **values: Any) -> None:
    conn.execute(update(caps).where(caps.c.id == cap_id).values(**values))


def delete_cap(conn: Connection, cap_id: int) -> None:
    conn.execute(delete(caps).where(caps.c.id == cap_id))


def queue_caps(conn: Connection, workspace_id: int) -> list[RowMapping]:
    """The workspace's caps with a queue limit."""
    return list(conn.execute(select(caps).where(caps.c.workspace_id == workspace_id,
                                                caps.c.max_queued_runs.is_not(None))
                             .order_by(caps.c.id)).mappings())


# --- usage (derived) --------------------------------------------------------------------------

def usage_groups(conn: Connection, now: datetime) -> tuple[list[RowMapping], list[RowMapping]]:
    """(leased phases, today's attempt seconds) grouped by (ws, slug, cap, ex): the claim's view."""
    from lakehouse.domain.caps import day_start

    pg = conn.dialect.name == "postgresql"
    sql = (f"WITH {usage_ctes(pg)}\n"
           "SELECT 'use' AS k, ws, slug, cap, ex, CAST(n AS float) AS v FROM k_use\n"
           "UNION ALL SELECT 'spent', ws, slug, cap, ex, CAST(s AS float) FROM k_spent")
    stmt = text(sql).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("day_start", type_=UTCDateTime()))
    rows = list(conn.execute(stmt, {"now": now, "day_start": day_start(now)}).mappings())
    return [r for r in rows if r["k"] == "use"], [r for r in rows if r["k"] == "spent"]


def waiting_groups(conn: Connection, now: datetime) -> list[RowMapping]:
    """Runnable queued phases by (ws, slug, cap): the work a full cap keeps waiting."""
    stmt = (select(runs.c.workspace_id.label("ws"), runs.c.spec_slug.label("slug"), phases.c.capability.label("cap"),
                   func.count().label("n"))
            .select_from(phases.join(runs, runs.c.id == phases.c.run_id))
            .where(phases.c.status == _QUEUED, phases.c.available_at <= now)
            .group_by(runs.c.workspace_id, runs.c.spec_slug, phases.c.capability))
    return list(conn.execute(stmt).mappings())


def queued_run_groups(conn: Connection, workspace_ids: Collection[int] | None) -> list[RowMapping]:
    """Runs in the queue (not started, first phase queued) by (ws, slug, first phase's capability)."""
    stmt = (select(runs.c.workspace_id.label("ws"), runs.c.spec_slug.label("slug"), phases.c.capability.label("cap"),
                   func.count().label("n"))
            .select_from(runs.join(phases, (phases.c.run_id == runs.c.id) & (phases.c.idx == 0)))
            .where(runs.c.status == RunStatus.QUEUED.value, phases.c.status == _QUEUED)
            .group_by(runs.c.workspace_id, runs.c.spec_slug, phases.c.capability))
    return list(conn.execute(visible(stmt, runs.c.workspace_id, workspace_ids)).mappings())


def queued_runs(conn: Connection, workspace_id: int, scope_kind: str, scope_value: str) -> int:
    """Runs of a cap's scope in the queue now."""
    stmt = (select(func.count()).select_from(runs.join(phases, (phases.c.run_id == runs.c.id) & (phases.c.idx == 0)))
            .where(runs.c.workspace_id == workspace_id, runs.c.status == RunStatus.QUEUED.value,
                   phases.c.status == _QUEUED))
    if scope_kind == ScopeKind.PIPELINE.value:
        stmt = stmt.where(runs.c.spec_slug == scope_value)
    elif scope_kind == ScopeKind.CAPABILITY.value:
        stmt = stmt.where(phases.c.capability == scope_value)
    return int(conn.execute(stmt).scalar_one())


# --- held runs --------------------------------------------------------------------------------

def hold(conn: Connection, run_id: str, workspace_id: int, cap_id: int, reason: str, now: datetime) -> None:
    conn.execute(held_runs.insert().values(run_id=run_id, workspace_id=workspace_id, cap_id=cap_id, reason=reason,
                                           held_at=now))


def held(conn: Connection, run_id: str) -> RowMapping | None:
    return conn.execute(select(held_runs).where(held_runs.c.run_id == run_id)).mappings().first()


def held_counts(conn: Connection) -> dict[int, int]:
    stmt = select(held_runs.c.cap_id, func.count()).where(held_runs.c.cap_id.is_not(None)).group_by(held_runs.c.cap_id)
    return {int(row[0]): int(row[1]) for row in conn.execute(stmt)}


def held_oldest(conn: Connection, limit: int) -> list[RowMapping]:
    """Held runs, oldest first, with what the queue check needs (locked on PostgreSQL)."""
    stmt = (select(held_runs, runs.c.spec_slug, runs.c.status, phases.c.capability)
            .join(runs, runs.c.id == held_runs.c.run_id)
            .join(phases, (phases.c.run_id == runs.c.id) & (phases.c.idx == 0))
            .order_by(held_runs.c.held_at, held_runs.c.run_id).limit(limit))
    return list(conn.execute(stmt).mappings())


def unhold(conn: Connection, run_id: str) -> bool:
    return conn.execute(delete(held_runs).where(held_runs.c.run_id == run_id)).rowcount == 1
