"""Runtime caps: who may set them, the enqueue check, the claim's lock, held runs and the report.

Caps are enforced at three layers (docs/operations.md):

* enqueue — :func:`admit` in the transaction that inserts the run: over ``max_queued_runs`` the run
  is refused (``RateLimited`` 429 with ``Retry-After``, the cap named) or, in ``hold`` mode, accepted
  with its first phase kept pending and the reason on the run; :func:`release_held` (each scheduler
  pass) queues held runs once their cap has room;
* claim — the claim statement itself (store/caps.py, store/queue.py) skips work over a concurrency or
  budget cap, lowers ``timeout_s`` to ``max_phase_timeout_s`` and orders work fairly between
  workspaces; on PostgreSQL, while concurrency caps exist, claims take a transaction advisory lock
  first (:func:`claim_lock`) so two claims cannot both see the last free slot;
* worker — the worker stops a phase past its ``timeout_s``; the reaper fails it (services/protocol.py).

Setting and deleting need ``cap.manage`` in the cap's workspace (admins and workspace admins); reading
needs ``read`` (members). Every change is audited.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from lakehouse.domain.caps import LIMITS, CapSpec, QueueMode, ScopeKind, parse
from lakehouse.domain.events import EventType
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import PhaseStatus, RunStatus
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import NotFound, RateLimited
from lakehouse.store import caps as store
from lakehouse.store import dialect, queue
from lakehouse.store import jobs as jobs_store
from lakehouse.store.types_public import Connection, RowMapping

RETRY_AFTER_S = 30  # what a refused enqueue is told to wait: about one queue turn
_LOCK_TTL_S = 2.0  # how long a process trusts "no concurrency caps" before looking again
_has_caps: dict[str, tuple[float, bool]] = {}


# --- the claim --------------------------------------------------------------------------------

def claim_lock(conn: Connection) -> None:
    """PostgreSQL: while any concurrency cap exists, claims serialise on one advisory lock taken
    before the claim statement (whose fresh snapshot then sees every committed lease), so usage
    derived in the statement cannot be raced. Without concurrency caps no lock is taken."""
    if conn.dialect.name != "postgresql":
        return  # SQLite writers are serialised by BEGIN IMMEDIATE
    key = str(conn.engine.url)
    seen = _has_caps.get(key)
    mono = time.monotonic()
    if seen is None or seen[0] < mono:
        seen = (mono + _LOCK_TTL_S, store.has_concurrency_caps(conn))
        _has_caps[key] = seen
    if seen[1]:
        dialect.advisory_xact_lock(conn, store.CAPS_LOCK_KEY)


def _changed(conn: Connection) -> None:
    _has_caps.pop(str(conn.engine.url), None)


def handoff_capped(conn: Connection, run_id: str, capability: str, executor_id: str) -> bool:
    run = queue.get_run(conn, run_id)
    assert run is not None
    return store.handoff_capped(conn, run["workspace_id"], run["spec_slug"], capability, executor_id)


# --- enqueue ----------------------------------------------------------------------------------

def _scope(cap: RowMapping | dict[str, Any]) -> str:
    kind = cap["scope_kind"]
    return kind if kind == ScopeKind.WORKSPACE.value else f"{kind} {cap['scope_value']}"


def admit(conn: Connection, ws_id: int, spec_slug: str, capability: str | None) -> tuple[int, str] | None:
    """The enqueue check, in the transaction that will insert the run: None to queue it, or
    ``(cap_id, reason)`` to hold it; ``RateLimited`` when a ``reject`` cap is full."""
    found = store.queue_caps(conn, ws_id)
    if not found:
        return None
    dialect.advisory_xact_lock(conn, store.CAPS_LOCK_KEY + ws_id)  # two enqueues cannot both take the last place
    hold: tuple[int, str] | None = None
    for cap in found:
        kind = cap["scope_kind"]
        if (kind == ScopeKind.PIPELINE.value and cap["scope_value"] != spec_slug) or (
                kind == ScopeKind.CAPABILITY.value and cap["scope_value"] != capability):
            continue
        queued = store.queued_runs(conn, ws_id, kind, cap["scope_value"])
        if queued < cap["max_queued_runs"]:
            continue
        why = (f"queue cap {_scope(cap)} (cap {cap['id']}): {queued} runs queued, "
               f"max_queued_runs {cap['max_queued_runs']}")
        if cap["queue_mode"] == QueueMode.REJECT.value:
            raise RateLimited(f"{why}; retry later", code="queue_cap", details={
                "cap_id": cap["id"], "scope": kind, "value": cap["scope_value"], "queued": queued,
                "max_queued_runs": cap["max_queued_runs"], "retry_after_s": RETRY_AFTER_S})
        hold = hold or (int(cap["id"]), f"held by {why}")
    return hold


def hold_run(conn: Connection, run_id: str, ws_id: int, hold: tuple[int, str], now: datetime) -> None:
    """Record why a run inserted with its first phase pending is held (the reason is on the run)."""
    store.hold(conn, run_id, ws_id, hold[0], hold[1], now)
    queue.append_events(conn, run_id, [{"type": EventType.RUN_HELD.value, "ts": now, "level": "warning",
                                        "message": hold[1], "payload": {"cap_id": hold[0], "reason": hold[1]}}])


def insert_job_runs(conn: Connection, new: Sequence[jobs_store.NewRun], now: datetime, *,
                    reject: bool) -> list[str]:
    """Insert runs of jobs (manual, scheduled, triggered) through the enqueue check; returns the ids
    inserted. Runs of a workspace with queue caps are admitted and inserted one at a time, so each
    sees the ones before it; the rest go in as one set. Over a full ``reject`` cap a manual run is
    refused (``reject=True``: 429); a scheduled or triggered one is held instead, so a tick is never
    lost. Backfill runs are not checked: their backfill's slots release them."""
    capped: dict[int, bool] = {}

    def has_queue_caps(ws_id: int) -> bool:
        if ws_id not in capped:
            capped[ws_id] = bool(store.queue_caps(conn, ws_id))
        return capped[ws_id]

    free = [n for n in new if n.backfill_id is not None or not n.released or not has_queue_caps(n.workspace_id)]
    ids = jobs_store.insert_runs(conn, free, now) if free else []
    for n in new:
        if any(n is f for f in free):
            continue
        first = n.request.phases[0].effective_capability if n.request.phases else None
        try:
            hold = admit(conn, n.workspace_id, n.request.spec_slug, first)
        except RateLimited as exc:
            if reject:
                raise
            hold = (int(exc.details["cap_id"]), f"held by {exc.message}")
        made = jobs_store.insert_runs(conn, [replace(n, released=False) if hold else n], now)
        if made and hold is not None:
            hold_run(conn, made[0], n.workspace_id, hold, now)
        ids += made
    return ids


def held_reason(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = store.held(conn, run_id)
    if row is None:
        return None
    return {"reason": row["reason"], "cap_id": row["cap_id"], "held_at": row["held_at"]}


def release_held(ctx: Context, now: datetime | None = None, batch: int = 200) -> int:
    """Queue held runs, oldest first, while their queue caps have room (a scheduler pass). A run
    cancelled while held is dropped from the list. Returns how many runs were queued."""
    released = 0
    with ctx.db.write() as conn:
        now = now or ctx.clock()
        for row in store.held_oldest(conn, batch):
            if row["status"] != RunStatus.QUEUED.value:
                store.unhold(conn, row["run_id"])
                continue
            try:
                if admit(conn, row["workspace_id"], row["spec_slug"], row["capability"]) is not None:
                    continue
            except RateLimited:  # the cap became a reject cap: it still has no room
                continue
            store.unhold(conn, row["run_id"])
            first = queue.next_phase(conn, row["run_id"], 0)
            if first is not None and first["status"] == PhaseStatus.PENDING.value:
                queue.queue_phase(conn, row["run_id"], 0, now, row=first)
            queue.append_events(conn, row["run_id"], [{
                "type": EventType.RUN_RELEASED.value, "ts": now, "level": "info",
                "message": "released to the queue: its queue cap has room", "payload": {"cap_id": row["cap_id"]}}])
            released += 1
        if released:
            dialect.notify(conn, queue.READY_CHANNEL)
    if released:
        ctx.waker.ready()
    return released


# --- managing caps ----------------------------------------------------------------------------

def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def render(r: RowMapping | dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "workspace": r["workspace"], "scope": r["scope_kind"], "value": r["scope_value"],
            **{k: r[k] for k in LIMITS}, "queue_mode": r["queue_mode"], "updated_by": r["updated_by"],
            "updated_at": _ts(r["updated_at"])}


def _ws(ctx: Context, principal: Principal, workspace: str, action: Action) -> int:
    principal.require(action)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(action, ws_id)
    return ws_id


def set_cap(ctx: Context, principal: Principal, workspace: str, scope: str, value: str | None,
            limits: dict[str, Any], queue_mode: str | None = None) -> dict[str, Any]:
    """Create or replace the cap of one scope (limits not given are cleared)."""
    ws_id = _ws(ctx, principal, workspace, Action.CAP_MANAGE)
    spec: CapSpec = parse(scope, value, limits, queue_mode)
    values = {k: getattr(spec, k) for k in LIMITS}
    with ctx.db.write() as conn:
        now = ctx.clock()
        row = store.find_cap(conn, ws_id, spec.scope_kind.value, spec.scope_value)
        if row is None:
            cap_id = store.insert_cap(conn, workspace_id=ws_id, scope_kind=spec.scope_kind.value,
                                      scope_value=spec.scope_value, queue_mode=spec.queue_mode.value,
                                      updated_by=principal.name, created_at=now, updated_at=now, **values)
        else:
            cap_id = int(row["id"])
            store.update_cap(conn, cap_id, queue_mode=spec.queue_mode.value, updated_by=principal.name,
                             updated_at=now, **values)
        audit.record(conn, now, principal, "cap.set", "cap", str(cap_id), ws_id,
                     {"scope": spec.scope_kind.value, "value": spec.scope_value, "queue_mode": spec.queue_mode.value,
                      **values})
        _changed(conn)
        dialect.notify(conn, queue.READY_CHANNEL)  # a raised cap may let waiting work run
    ctx.waker.ready()
    return get_cap(ctx, principal, cap_id)


def _cap_row(ctx: Context, principal: Principal, cap_id: int, action: Action) -> RowMapping:
    principal.require(action)
    with ctx.db.read() as conn:
        row = store.get_cap(conn, cap_id)
    if row is None or not principal.can_see(row["workspace_id"]):
        raise NotFound(f"cap {cap_id} not found", code="cap_not_found")
    principal.require_in(action, row["workspace_id"])
    return row


def get_cap(ctx: Context, principal: Principal, cap_id: int) -> dict[str, Any]:
    row = _cap_row(ctx, principal, cap_id, Action.READ)
    for item in report(ctx, principal):
        if item["id"] == row["id"]:
            return item
    raise NotFound(f"cap {cap_id} not found", code="cap_not_found")  # pragma: no cover - deleted meanwhile


def delete_cap(ctx: Context, principal: Principal, cap_id: int) -> None:
    row = _cap_row(ctx, principal, cap_id, Action.CAP_MANAGE)
    with ctx.db.write() as conn:
        store.delete_cap(conn, cap_id)
        audit.record(conn, ctx.clock(), principal, "cap.delete", "cap", str(cap_id), row["workspace_id"],
                     {"scope": row["scope_kind"], "value": row["scope_value"]})
        _changed(conn)
        dialect.notify(conn, queue.READY_CHANNEL)
    ctx.waker.ready()


def _matches(cap: RowMapping, ws: int, slug: str | None, capability: str | None, executor: str | None) -> bool:
    if cap["workspace_id"] != ws:
        return False
    kind, value = cap["scope_kind"], cap["scope_value"]
    return bool(kind == ScopeKind.WORKSPACE.value or (kind == ScopeKind.PIPELINE.value and value == slug)
            or (kind == ScopeKind.CAPABILITY.value and value == capability)
            or (kind == ScopeKind.EXECUTOR.value and value == executor))


def report(ctx: Context, principal: Principal, workspace: str | None = None) -> list[dict[str, Any]]:
    """Every cap the principal may read with its usage (derived now, as the claim derives it) and
    who is throttled: ``throttled`` names the limits reached, ``waiting`` counts the runnable phases
    of its scope, ``held`` the runs it holds back."""
    principal.require(Action.READ)
    ws_filter: Collection[int] | None = principal.workspace_ids
    if workspace is not None:
        ws_filter = [_ws(ctx, principal, workspace, Action.READ)]
    with ctx.db.read() as conn:
        now = ctx.clock()
        rows = [r for r in store.list_caps(conn, ws_filter) if principal.can_in(Action.READ, r["workspace_id"])]
        if not rows:
            return []
        used, spent = store.usage_groups(conn, now)
        waiting = store.waiting_groups(conn, now)
        queued = store.queued_run_groups(conn, ws_filter)
        held = store.held_counts(conn)
    out = []
    for cap in rows:
        item = render(cap)
        is_ex = cap["scope_kind"] == ScopeKind.EXECUTOR.value
        item["usage"] = {
            "concurrent": int(sum(g["v"] for g in used if _matches(cap, g["ws"], g["slug"], g["cap"], g["ex"]))),
            "runtime_s_today": round(sum(g["v"] for g in spent
                                         if _matches(cap, g["ws"], g["slug"], g["cap"], g["ex"])), 3),
            "queued_runs": 0 if is_ex else sum(int(g["n"]) for g in queued
                                               if _matches(cap, g["ws"], g["slug"], g["cap"], None)),
            "waiting_phases": sum(int(g["n"]) for g in waiting if _matches(
                cap, g["ws"], g["slug"], g["cap"], cap["scope_value"] if is_ex else None)),
            "held_runs": held.get(int(cap["id"]), 0),
        }
        u = item["usage"]
        throttled = []
        if cap["max_concurrent"] is not None and u["concurrent"] >= cap["max_concurrent"]:
            throttled.append("max_concurrent")
        if cap["runtime_s_per_day"] is not None and u["runtime_s_today"] >= cap["runtime_s_per_day"]:
            throttled.append("runtime_s_per_day")
        if cap["max_queued_runs"] is not None and u["queued_runs"] >= cap["max_queued_runs"]:
            throttled.append("max_queued_runs")
        item["throttled"] = throttled
        out.append(item)
    return out
