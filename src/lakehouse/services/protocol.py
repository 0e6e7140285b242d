"""The executor contract: claim, heartbeat, events, complete, fail, and the lease reaper.

Every state change writes its event in the same transaction. Lease-holder calls are
compare-and-swap on (run_id, lease_token); no row means the lease is gone and the caller gets 409.
Every call takes the principal and needs ``Action.EXECUTE``; an executor bound to workspaces
(``principal.workspace_ids``) claims only phases of runs in them (a filter in the claim statement)
and any call on a run of another workspace answers 404, as if the run did not exist.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.events import EXECUTOR_EVENT_TYPES, LEVELS, EventType
from lakehouse.domain.principal import Principal
from lakehouse.domain.retry import backoff_seconds, may_retry
from lakehouse.domain.roles import Action
from lakehouse.domain.states import AttemptStatus, PhaseStatus, RunStatus
from lakehouse.services import alert_fire, caps, datasets, freshness, openlineage
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, LeaseLost, NotFound, ServiceError
from lakehouse.store import dialect, executor_rows, queue
from lakehouse.store.types_public import Connection, RowMapping


def _ev(type_: EventType | str, now: datetime, message: str, phase: str | None = None,
        level: str = "info", **payload: Any) -> dict[str, Any]:
    return {"type": str(type_), "ts": now, "level": level, "message": message, "phase": phase,
            "payload": payload}


# --- claim --------------------------------------------------------------------------------------

def claim(ctx: Context, principal: Principal, executor_id: str, capabilities: list[str], *,
          max_phases: int = 1, run_id: str | None = None, start: bool = True,
          cached: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Lease up to ``max_phases`` runnable phases; claim-and-start in one transaction. A claim of a
    run in ``cached`` (the executor already has its input manifest) carries ``input_manifest`` None."""
    principal.require(Action.EXECUTE)
    with ctx.db.write() as conn:
        if run_id is not None:
            _visible_run(conn, principal, run_id)
        claims = _drop_cached(_claim(ctx, conn, principal, executor_id, capabilities, max_phases, run_id, start,
                                     cached), cached)
        executor_rows.adopt(conn, executor_id, principal.name)  # the account that registered it (services/executors.py)
    for c in claims:
        ctx.waker.run_event(c["run_id"])
    return claims


def _visible_run(conn: Connection, principal: Principal, run_id: str) -> RowMapping:
    """The run, or 404 when it does not exist or belongs to a workspace the principal cannot see."""
    run = queue.get_run(conn, run_id)
    if run is None or not principal.can_see(run["workspace_id"]):
        raise NotFound(f"run {run_id} not found", code="run_not_found")
    return run


def _claim(ctx: Context, conn: Connection, principal: Principal, executor_id: str, capabilities: list[str],
           max_phases: int, run_id: str | None, start: bool, cached: Sequence[str] = ()) -> list[dict[str, Any]]:
    now = ctx.clock()
    # set-based (store/queue.py, claim_set): one statement on PostgreSQL, one write per table on SQLite
    expires = now + timedelta(seconds=ctx.settings.lease_ttl_s)
    caps.claim_lock(conn)  # concurrency caps: capped claims take turns (services/caps.py)
    claims = queue.claim_set(conn, executor_id=executor_id, capabilities=capabilities, now=now, expires=expires,
                             limit=max_phases, run_id=run_id, workspace_ids=principal.workspace_ids,
                             start=start, cached=cached)
    for c in claims:
        c["lease_expires_at"] = expires
        c["lease_ttl_s"] = ctx.settings.lease_ttl_s
    return claims


def _lease(ctx: Context, conn: Connection, phase: RowMapping | dict[str, Any], run: RowMapping, executor_id: str,
           now: datetime, start: bool) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Lease one queued phase of a (locked) run; returns the claim and the events to append."""
    expires = now + timedelta(seconds=ctx.settings.lease_ttl_s)
    token = secrets.token_urlsafe(24)
    attempt = queue.lease_phase(conn, phase, executor_id=executor_id, lease_token=token,  # type: ignore[arg-type]
                                lease_token_hash=hashlib.sha256(token.encode()).hexdigest(),
                                expires_at=expires, now=now, start=start)
    if not attempt:
        return None
    events = []
    if run["status"] == RunStatus.QUEUED.value:
        queue.set_run_status(conn, run, RunStatus.RUNNING, now)
        events.append(_ev(EventType.RUN_STARTED, now, "run started"))
    events.append(_ev(EventType.PHASE_CLAIMED, now, f"{phase['name']} claimed by {executor_id}",
                      phase["name"], executor_id=executor_id, attempt=attempt,
                      lease_expires_at=expires.isoformat()))
    if start:
        events.append(_ev(EventType.PHASE_STARTED, now, f"{phase['name']} started (attempt {attempt})",
                          phase["name"], executor_id=executor_id, attempt=attempt))
    claim = {
        "run_id": phase["run_id"], "phase": phase["name"], "phase_type": phase["type"],
        "attempt": attempt, "max_attempts": phase["max_attempts"], "lease_token": token,
        "lease_expires_at": expires, "lease_ttl_s": ctx.settings.lease_ttl_s,
        "timeout_s": phase["timeout_s"], "params": phase["params"],
        "input_manifest": run["input_manifest"], "spec_slug": run["spec_slug"], "git_sha": run["git_sha"],
        "environment": run["environment"], "workspace": queue.workspace_slug(conn, run["workspace_id"]),
        "created_by": run["created_by"],
        "previous_outputs": queue.previous_outputs(conn, phase["run_id"], phase["idx"]),
    }
    return claim, events


# --- lease holder calls -------------------------------------------------------------------------

def _holder(ctx: Context, conn: Connection, run_id: str, lease_token: str, now: datetime) -> RowMapping:
    phase = queue.find_lease(conn, run_id, lease_token)
    if phase is None:
        if queue.get_run(conn, run_id) is None:
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        raise LeaseLost("the lease is no longer held (expired and requeued, cancelled or finished)")
    if phase["lease_expires_at"] is not None and phase["lease_expires_at"] < now:
        raise _Expired(phase)
    return phase


class _Expired(Exception):
    def __init__(self, phase: RowMapping) -> None:
        self.phase = phase


def _with_holder(ctx: Context, principal: Principal, run_id: str, lease_token: str, fn: Any) -> Any:
    """Run ``fn(conn, phase, now)`` for the lease holder; an expired lease is reaped and lost."""
    principal.require(Action.EXECUTE)
    try:
        with ctx.db.write() as conn:
            now = ctx.clock()
            if principal.workspace_ids is not None:
                _visible_run(conn, principal, run_id)
            phase = _holder(ctx, conn, run_id, lease_token, now)
            result = fn(conn, phase, now)
        ctx.waker.run_event(run_id)
        return result
    except _Expired as exp:
        with ctx.db.write() as conn:
            now = ctx.clock()
            still = queue.find_lease(conn, run_id, lease_token)
            delay = None
            if still is not None:
                delay = _retry_delay(_expire(ctx, conn, still, now, "lease expired before the holder called back"))
        ctx.waker.ready()
        _wake_later(ctx, delay)
        ctx.waker.run_event(run_id)
        raise LeaseLost("the lease expired and the phase was requeued") from exp


def _client_events(phase_name: str | None, events: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for i, e in enumerate(events or []):
        if e["type"] not in EXECUTOR_EVENT_TYPES:
            raise InvalidInput(f"executors may not post {e['type']} events",
                               code="invalid_event_type", details={"allowed": sorted(EXECUTOR_EVENT_TYPES)})
        if e["level"] not in LEVELS:
            raise InvalidInput(f"unknown level {e['level']!r}", code="invalid_level")
        _no_nul({k: e.get(k) for k in ("event_id", "phase", "message", "payload")}, f"events[{i}]",
                "invalid_event")
        out.append({**e, "phase": e.get("phase") or phase_name, "_client": True})
    return out


def _no_nul(value: Any, field: str, code: str) -> None:
    """Refuse a NUL character anywhere in a JSON value (PostgreSQL text cannot hold one)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{field} contains a NUL character", code=code, details={"field": field})
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k, f"{field} (a key)", code)
            _no_nul(v, f"{field}.{k}", code)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nul(v, f"{field}[{i}]", code)


def check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse an output manifest the control plane cannot record: 422 ``invalid_manifest`` with
    ``details.field`` naming the offending field, before anything is written."""
    _no_nul(manifest, "output_manifest", "invalid_manifest")

    def bad(field: str, message: str) -> InvalidInput:
        return InvalidInput(f"output_manifest.{field}: {message}", code="invalid_manifest",
                            details={"field": f"output_manifest.{field}"})

    marks = manifest.get("watermarks")
    if marks is not None:
        if not isinstance(marks, dict):
            raise bad("watermarks", "must be an object of table: {column, value}")
        for table, mark in marks.items():
            if not table or len(table) > 200:
                raise bad(f"watermarks.{table}", "table names have 1-200 characters")
            if not isinstance(mark, dict) or not isinstance(mark.get("column"), str) or "value" not in mark:
                raise bad(f"watermarks.{table}", "must be an object {column, value}")
            if not mark["column"] or len(mark["column"]) > 200:
                raise bad(f"watermarks.{table}.column", "column names have 1-200 characters")
            if isinstance(mark["value"], dict | list):
                raise bad(f"watermarks.{table}.value", "must be a string, a number or null")
    lineage = manifest.get("lineage")
    if lineage is None:
        return
    if not isinstance(lineage, dict):
        raise bad("lineage", "must be an object {inputs, outputs, edges}")
    from lakehouse.services.lineage import normalize

    def names(value: Any, field: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise bad(field, "must be a list of dotted table names")
        for i, name in enumerate(value):
            try:
                normalize(name)
            except InvalidInput as exc:
                raise bad(f"{field}[{i}]", exc.message) from None

    names(lineage.get("inputs"), "lineage.inputs")
    names(lineage.get("outputs"), "lineage.outputs")
    edges = lineage.get("edges")
    if edges is not None:
        if not isinstance(edges, list):
            raise bad("lineage.edges", "must be a list of {inputs, outputs}")
        for i, edge in enumerate(edges):
            if not isinstance(edge, dict):
                raise bad(f"lineage.edges[{i}]", "must be an object {inputs, outputs}")
            names(edge.get("inputs"), f"lineage.edges[{i}].inputs")
            names(edge.get("outputs"), f"lineage.edges[{i}].outputs")


def heartbeat(ctx: Context, principal: Principal, run_id: str, lease_token: str, progress: Any = None,
              events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    def fn(conn: Connection, phase: RowMapping, now: datetime) -> dict[str, Any]:
        out = _beat(ctx, conn, phase, lease_token, now, progress, events)
        if phase["executor_id"]:
            queue.touch_executor(conn, phase["executor_id"], None, now)
        return out

    return _with_holder(ctx, principal, run_id, lease_token, fn)  # type: ignore[no-any-return]


def _beat(ctx: Context, conn: Connection, phase: RowMapping, lease_token: str, now: datetime, progress: Any,
          events: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Extend one held lease (and start a claimed phase); append the events it carries."""
    if progress is not None:
        _no_nul(progress, "progress", "invalid_progress")
    out = _client_events(phase["name"], events)
    expires = now + timedelta(seconds=ctx.settings.lease_ttl_s)
    if not queue.extend_lease(conn, phase, lease_token, expires, now, progress):
        raise LeaseLost("the lease changed under this heartbeat")
    if phase["status"] == PhaseStatus.CLAIMED.value:
        out.insert(0, _ev(EventType.PHASE_STARTED, now, f"{phase['name']} started", phase["name"],
                          attempt=phase["attempt"]))
    if progress is not None:
        out.append(_ev(EventType.PHASE_PROGRESS, now, _progress_text(progress), phase["name"],
                       progress=progress))
    queue.append_events(conn, phase["run_id"], out)
    return {"lease_expires_at": expires, "status": PhaseStatus.RUNNING.value}


def heartbeat_many(ctx: Context, principal: Principal, leases: list[dict[str, Any]]) -> dict[str, Any]:
    """Extend every lease an executor holds in ONE transaction (a batched claim keeps its waiting
    phases alive while it runs the first). Each item answers on its own (a savepoint each): a lost
    lease is that item's ``lease_lost`` error, not the whole call's."""
    principal.require(Action.EXECUTE)
    results: list[dict[str, Any]] = []
    executors: set[str] = set()
    with ctx.db.write() as conn:
        now = ctx.clock()
        for item in leases:
            run_id, token = item["run_id"], item["lease_token"]
            try:
                with conn.begin_nested():
                    if principal.workspace_ids is not None:
                        _visible_run(conn, principal, run_id)
                    phase = _holder(ctx, conn, run_id, token, now)
                    beat = _beat(ctx, conn, phase, token, now, item.get("progress"), item.get("events"))
            except _Expired:
                results.append({"run_id": run_id, "error": {
                    "code": "lease_lost", "message": "the lease expired; the reaper requeues the phase"}})
                continue
            except ServiceError as exc:
                results.append({"run_id": run_id, "error": {"code": exc.code, "message": exc.message}})
                continue
            if phase["executor_id"]:
                executors.add(phase["executor_id"])
            results.append({"run_id": run_id, **beat})
        for executor_id in sorted(executors):
            queue.touch_executor(conn, executor_id, None, now)
    for r in results:
        ctx.waker.run_event(r["run_id"])
    return {"results": results}


def _progress_text(progress: Any) -> str:
    if isinstance(progress, dict) and "message" in progress:
        return str(progress["message"])[:500]
    return "progress"


def post_events(ctx: Context, principal: Principal, run_id: str, events: list[dict[str, Any]],
                lease_token: str | None = None) -> int:
    principal.require(Action.EXECUTE)
    with ctx.db.write() as conn:
        _visible_run(conn, principal, run_id)
        if lease_token is not None:
            now = ctx.clock()
            phase = _holder(ctx, conn, run_id, lease_token, now)
            name = phase["name"]
        else:
            name = None
        accepted = queue.append_events(conn, run_id, _client_events(name, events))
    ctx.waker.run_event(run_id)
    return accepted


def complete(ctx: Context, principal: Principal, run_id: str, lease_token: str, output_manifest: dict[str, Any],
             events: list[dict[str, Any]] | None = None, *, claim_next: dict[str, Any] | None = None,
             cached: Sequence[str] = ()) -> dict[str, Any]:
    """The phase succeeded; queue the next phase or finish the run. ``claim_next`` (executor_id,
    capabilities, max_phases) leases the next work in the same transaction."""
    principal.require(Action.EXECUTE)
    item = _fast_item(0, {"run_id": run_id, "lease_token": lease_token, "output_manifest": output_manifest,
                          "events": events})
    if item is not None:
        with ctx.db.write() as conn:
            now = ctx.clock()
            if claim_next is not None:
                caps.claim_lock(conn)
            done, claims = queue.complete_set(
                conn, [item[0]], item[1], now=now, expires=now + timedelta(seconds=ctx.settings.lease_ttl_s),
                claim_next=claim_next, workspace_ids=principal.workspace_ids, cached=cached)
            alert_fire.on_runs_finished(conn, _succeeded_runs(done), now)
        if 0 in done:
            _after_set(ctx, done, claims)
            out = {"run_status": done[0]["run_status"], "phase": done[0]["phase"],
                   "phase_status": PhaseStatus.SUCCEEDED.value}
            if claim_next is not None:
                out["next"] = _stamp(ctx, now, claims)
            return out
    # not completed (the lease is not held: the slow path tells 404 / 409 / expired apart) or a
    # manifest that needs more than the set-based statement (watermarks, lineage, a refusal)

    def fn(conn: Connection, phase: RowMapping, now: datetime) -> dict[str, Any]:
        if claim_next is not None:
            handed = _complete_and_hand_off(ctx, conn, principal, phase, now, output_manifest, events, claim_next)
            if handed is not None:
                return handed
        result, nxt = _complete_one(conn, phase, now, output_manifest, events)
        if claim_next is not None:
            result["next"] = _claim_next(ctx, conn, principal, claim_next, run_id if nxt is not None else None)
        elif phase["executor_id"]:
            queue.touch_executor(conn, phase["executor_id"], None, now, None)
        result["_wake"] = _notify_unclaimed(conn, [(run_id, nxt)], result.get("next"))
        return result

    result = _with_holder(ctx, principal, run_id, lease_token, fn)
    if result.pop("_wake"):
        ctx.waker.ready()
    _drop_cached(result.get("next") or [], cached)
    return result  # type: ignore[no-any-return]


def _drop_cached(claims: list[dict[str, Any]], cached: Sequence[str]) -> list[dict[str, Any]]:
    """The per-item path's answer to ``cached`` (the set-based statements leave it out themselves)."""
    if cached:
        for c in claims:
            if c["run_id"] in cached:
                c["input_manifest"] = None
    return claims


def _fast_item(i: int, item: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The item and event rows of ``queue.complete_set``, or None when the item needs the slow path:
    a manifest that declares watermarks or lineage (recorded by services), or one to be refused."""
    manifest = item.get("output_manifest") or {}
    if "watermarks" in manifest or "lineage" in manifest:
        return None
    try:
        check_manifest(manifest)
        events = _client_events(None, item.get("events"))
    except InvalidInput:
        return None  # refused on the slow path, after the lease check, as before
    rows, seen = [], set()
    for ord_, e in enumerate(events):
        event_id = e.get("event_id") or queue.new_event_id()
        if event_id in seen:
            continue
        seen.add(event_id)
        rows.append({"i": i, "ord": ord_, "event_id": event_id, "type": e["type"], "phase": e.get("phase"),
                     "ts": e["ts"], "level": e["level"], "message": e.get("message", ""),
                     "payload": e.get("payload") or {}})
    return {"i": i, "run_id": item["run_id"], "lease_token": item["lease_token"], "manifest": manifest}, rows


def _stamp(ctx: Context, now: datetime, claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    expires = now + timedelta(seconds=ctx.settings.lease_ttl_s)
    for c in claims:
        c["lease_expires_at"] = expires
        c["lease_ttl_s"] = ctx.settings.lease_ttl_s
    return claims


def _after_set(ctx: Context, done: dict[int, dict[str, Any]], claims: list[dict[str, Any]]) -> None:
    """Wake this process's waiters after a set-based complete committed (other processes got the
    statement's NOTIFYs)."""
    for d in done.values():
        ctx.waker.run_event(d["run_id"])
    for c in claims:
        ctx.waker.run_event(c["run_id"])
    if any(d["queued_next"] for d in done.values()):
        ctx.waker.ready()


def complete_many(ctx: Context, principal: Principal, completions: list[dict[str, Any]],
                  claim_next: dict[str, Any] | None = None, cached: Sequence[str] = ()) -> dict[str, Any]:
    """Complete several phases in ONE transaction (batched executors). Each item succeeds or fails on
    its own: a lost lease answers that item with an error, not the whole call. The batch, the
    hand-offs and the next claims are one statement on PostgreSQL, one read and one write per table
    on SQLite (store/queue.py, complete_set); items it did not complete (and
    manifests with watermarks or lineage) take the per-item path (a savepoint each)."""
    principal.require(Action.EXECUTE)
    return _complete_many_set(ctx, principal, completions, claim_next, cached)


def _complete_many_set(ctx: Context, principal: Principal, completions: list[dict[str, Any]],
                       claim_next: dict[str, Any] | None, cached: Sequence[str]) -> dict[str, Any]:
    fast: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    runs_seen: set[str] = set()
    for i, item in enumerate(completions):
        prepared = None if item["run_id"] in runs_seen else _fast_item(i, item)
        runs_seen.add(item["run_id"])
        if prepared is not None:
            fast.append(prepared[0])
            rows += prepared[1]
    results: list[dict[str, Any] | None] = [None] * len(completions)
    with ctx.db.write() as conn:
        now = ctx.clock()
        if claim_next is not None:
            caps.claim_lock(conn)
        done, claims = queue.complete_set(conn, fast, rows, now=now,
                                          expires=now + timedelta(seconds=ctx.settings.lease_ttl_s),
                                          claim_next=claim_next, workspace_ids=principal.workspace_ids, cached=cached)
        alert_fire.on_runs_finished(conn, _succeeded_runs(done), now)
        for i, d in done.items():
            results[i] = {"run_id": d["run_id"], "run_status": d["run_status"], "phase": d["phase"],
                          "phase_status": PhaseStatus.SUCCEEDED.value}
        rest = [(i, c) for i, c in enumerate(completions) if results[i] is None]
        if rest:
            slow = _complete_items(ctx, conn, principal, [c for _, c in rest], now)
            for (i, _), (result, _nxt) in zip(rest, slow, strict=True):
                results[i] = result
            wake_slow = _notify_unclaimed(conn, [(r["run_id"], n) for r, n in slow], None)
        else:
            wake_slow = False
    _after_set(ctx, done, claims)
    for r in results:
        assert r is not None
        if "error" not in r and not any(d["run_id"] == r["run_id"] for d in done.values()):
            ctx.waker.run_event(r["run_id"])
    if wake_slow:
        ctx.waker.ready()
    answer: dict[str, Any] = {"results": results}
    if claim_next is not None:
        answer["next"] = _stamp(ctx, now, claims)
    return answer


def _complete_items(ctx: Context, conn: Connection, principal: Principal, completions: list[dict[str, Any]],
                    now: datetime) -> list[tuple[dict[str, Any], RowMapping | None]]:
    """Complete items one by one (a savepoint each); an item's refusal is its result's ``error``."""
    out: list[tuple[dict[str, Any], RowMapping | None]] = []
    for item in completions:
        try:
            with conn.begin_nested():
                if principal.workspace_ids is not None:
                    _visible_run(conn, principal, item["run_id"])
                phase = _holder(ctx, conn, item["run_id"], item["lease_token"], now)
                result, nxt = _complete_one(conn, phase, now, item.get("output_manifest") or {}, item.get("events"))
        except _Expired:
            out.append(({"run_id": item["run_id"], "error": {
                "code": "lease_lost", "message": "the lease expired; the reaper requeues the phase"}}, None))
            continue
        except ServiceError as exc:
            out.append(({"run_id": item["run_id"], "error": {"code": exc.code, "message": exc.message,
                                                             "details": exc.details}}, None))
            continue
        out.append(({"run_id": item["run_id"], **result}, nxt))
    return out


def _complete_and_hand_off(ctx: Context, conn: Connection, principal: Principal, phase: RowMapping, now: datetime,
                           output_manifest: dict[str, Any], events: list[dict[str, Any]] | None,
                           want: dict[str, Any]) -> dict[str, Any] | None:
    """The chain fast path: when the run's next phase is one this executor can run, lease it to the
    same executor in the same transaction, with one trail write for both transitions. None when the
    next phase does not exist or is not for this executor (the general path then runs)."""
    nxt = queue.next_phase(conn, phase["run_id"], phase["idx"] + 1)
    if nxt is None or nxt["capability"] not in want["capabilities"]:
        return None
    if caps.handoff_capped(conn, phase["run_id"], nxt["capability"], want["executor_id"]):
        return None  # a capped phase goes through the capped claim
    run_id = phase["run_id"]
    out = _succeed(conn, phase, now, output_manifest, events)
    run = queue.get_run(conn, run_id, lock=True)
    assert run is not None
    _record_manifest(conn, run, phase["name"], output_manifest or {}, now)
    queue.queue_phase(conn, run_id, nxt["idx"], now, row=nxt)
    leased = _lease(ctx, conn, {**nxt, "status": PhaseStatus.QUEUED.value}, run, want["executor_id"], now, True)
    if leased is None:  # pragma: no cover - the run row is locked, so nobody else can take it
        raise RuntimeError(f"could not hand off {nxt['name']}")
    claim, lease_events = leased
    queue.append_events(conn, run_id, out + lease_events)
    claims = [claim]
    more = want.get("max_phases", 1) - 1
    if more > 0:
        claims += _claim(ctx, conn, principal, want["executor_id"], want["capabilities"], more, None, True)
    else:
        queue.touch_executor(conn, want["executor_id"], want["capabilities"], now, (run_id, nxt["name"]))
    return {"run_status": run["status"], "phase": phase["name"], "phase_status": PhaseStatus.SUCCEEDED.value,
            "next": claims, "_wake": False}


def _succeed(conn: Connection, phase: RowMapping, now: datetime, output_manifest: dict[str, Any],
             events: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Mark a leased phase succeeded; returns its events (executor events first)."""
    check_manifest(output_manifest or {})
    out = _client_events(phase["name"], events)
    queue.finish_phase(conn, phase, PhaseStatus.SUCCEEDED, now, output_manifest=output_manifest)
    took = (now - (phase["started_at"] or phase["claimed_at"] or now)).total_seconds()
    outputs = (output_manifest or {}).get("outputs")
    out.append(_ev(EventType.PHASE_SUCCEEDED, now, f"{phase['name']} succeeded in {took:.3f} s",
                   phase["name"], attempt=phase["attempt"], duration_s=round(took, 6),
                   outputs=sorted(outputs) if isinstance(outputs, dict) else None))
    return out


def _complete_one(conn: Connection, phase: RowMapping, now: datetime, output_manifest: dict[str, Any],
                  events: list[dict[str, Any]] | None) -> tuple[dict[str, Any], RowMapping | None]:
    run_id = phase["run_id"]
    out = _succeed(conn, phase, now, output_manifest, events)
    run = queue.get_run(conn, run_id, lock=True)
    assert run is not None
    _record_manifest(conn, run, phase["name"], output_manifest or {}, now)
    nxt = queue.queue_phase(conn, run_id, phase["idx"] + 1, now)
    if nxt is None:
        queue.set_run_status(conn, run, RunStatus.SUCCEEDED, now)
        out.append(_ev(EventType.RUN_SUCCEEDED, now, "run succeeded"))
    queue.append_events(conn, run_id, out)
    if nxt is None:
        alert_fire.on_events(conn, run_id, out, now)
    return {"run_status": RunStatus.SUCCEEDED.value if nxt is None else run["status"], "phase": phase["name"],
            "phase_status": PhaseStatus.SUCCEEDED.value}, nxt


def _notify_unclaimed(conn: Connection, queued: list[tuple[str, RowMapping | None]],
                      claims: list[dict[str, Any]] | None) -> bool:
    """Wake other executors only for work this call queued and did not lease itself (no herd)."""
    taken = {(c["run_id"], c["phase"]) for c in claims or []}
    left = any(nxt is not None and (run_id, nxt["name"]) not in taken for run_id, nxt in queued)
    if left:
        dialect.notify(conn, queue.READY_CHANNEL)
    return left


def _claim_next(ctx: Context, conn: Connection, principal: Principal, want: dict[str, Any], run_id: str | None
                ) -> list[dict[str, Any]]:
    """Lease the executor's next work in the caller's transaction, the same run's next phase first
    (a chain keeps its executor and its warm caches)."""
    n = want.get("max_phases", 1)
    can = want["capabilities"]
    claims = _claim(ctx, conn, principal, want["executor_id"], can, n, run_id, True) if run_id else []
    if len(claims) < n:
        claims += _claim(ctx, conn, principal, want["executor_id"], can, n - len(claims), None, True)
    return claims


def release(ctx: Context, principal: Principal, run_id: str, lease_token: str,
            reason: str = "released by the executor") -> dict[str, Any]:
    """Give a leased phase back without counting the attempt (an executor shutting down, or a
    long-poll whose client went away before it got its answer)."""

    reason = reason.replace("\x00", "\ufffd")

    def fn(conn: Connection, phase: RowMapping, now: datetime) -> dict[str, Any]:
        queue.release_lease(conn, phase, now)
        queue.append_events(conn, run_id, [_ev(EventType.PHASE_REQUEUED, now, f"{phase['name']} released: {reason}",
                                               phase["name"], next_attempt=phase["attempt"], reason=reason,
                                               released_by=phase["executor_id"])])
        if phase["executor_id"]:
            queue.touch_executor(conn, phase["executor_id"], None, now, None)
        dialect.notify(conn, queue.READY_CHANNEL)
        return {"phase": phase["name"], "phase_status": PhaseStatus.QUEUED.value}

    result = _with_holder(ctx, principal, run_id, lease_token, fn)
    ctx.waker.ready()
    return result  # type: ignore[no-any-return]


def _record_manifest(conn: Connection, run: RowMapping, phase: str, manifest: dict[str, Any], now: datetime) -> None:
    """What a completed phase declares that the control plane keeps: watermarks (advanced only here, in
    the transaction that records the publish) and lineage edges."""
    marks = manifest.get("watermarks")
    if isinstance(marks, dict) and marks:
        from lakehouse.services import watermarks

        pipeline = (run["input_manifest"] or {}).get("pipeline", run["spec_slug"])
        watermarks.advance(conn, run["workspace_id"], run["environment"], pipeline, marks, run["id"], now)
    lineage = manifest.get("lineage")
    if isinstance(lineage, dict) and (lineage.get("inputs") or lineage.get("outputs")):
        from lakehouse.services import lineage as lineage_service

        for edge in lineage.get("edges") or [{"inputs": lineage.get("inputs") or [],
                                               "outputs": lineage.get("outputs") or []}]:
            lineage_service.record_edges(conn, run["workspace_id"], run["environment"], run["id"], phase,
                                         list(edge.get("inputs") or []), list(edge.get("outputs") or []), now)
    freshness.on_manifest(conn, run, manifest, now)
    datasets.on_manifest(conn, run, manifest, now)  # published tables appear in the dataset registry
    openlineage.on_manifest(conn, run, phase, manifest, now)  # queued; sent by a background thread


def fail(ctx: Context, principal: Principal, run_id: str, lease_token: str, error: str, retryable: bool = True,
         events: list[dict[str, Any]] | None = None, kind: str = "error") -> dict[str, Any]:
    """Fail the leased attempt; ``kind`` ``timeout`` (the executor stopped the phase past its
    ``timeout_s``) records the attempt as ``timed_out``, as the reaper does."""
    error = error.replace("\x00", "\ufffd")  # an error text is kept, never refused
    attempt_status = (AttemptStatus.TIMED_OUT if kind == "timeout" else AttemptStatus.FAILED).value

    def fn(conn: Connection, phase: RowMapping, now: datetime) -> dict[str, Any]:
        out = _client_events(phase["name"], events)
        out += _fail_phase(ctx, conn, phase, now, error, retryable, attempt_status=attempt_status)
        queue.append_events(conn, run_id, out)
        if phase["executor_id"]:
            queue.touch_executor(conn, phase["executor_id"], None, now, None)
        return {"run_status": queue.get_run(conn, run_id)["status"],  # type: ignore[index]
                "phase": phase["name"], "requeued": any(e["type"] == "PHASE_REQUEUED" for e in out),
                "_delay": _retry_delay(out)}

    result = _with_holder(ctx, principal, run_id, lease_token, fn)
    ctx.waker.ready()
    _wake_later(ctx, result.pop("_delay"))
    return result  # type: ignore[no-any-return]


def _retry_delay(events: list[dict[str, Any]]) -> float | None:
    """The backoff of a requeue among ``events`` (None when the phase was not requeued for later)."""
    return next((e["payload"]["delay_s"] for e in events if e["type"] == EventType.PHASE_REQUEUED.value
                 and "delay_s" in e["payload"]), None)


def _wake_later(ctx: Context, delay_s: float | None) -> None:
    """A retry in backoff becomes runnable in ``delay_s``: wake claim waiters then, not at their timeout."""
    if delay_s is not None:
        ctx.waker.wake_in(delay_s)


def _fail_phase(ctx: Context, conn: Connection, phase: RowMapping, now: datetime, error: str, retryable: bool,
                attempt_status: str, event_type: EventType = EventType.PHASE_FAILED) -> list[dict[str, Any]]:
    """Requeue with backoff while attempts remain, else fail the phase and the run. Returns events."""
    name = phase["name"]
    error = error[:10_000]
    out = [_ev(event_type, now, f"{name} attempt {phase['attempt']} failed: {error[:300]}", name,
               level="error", attempt=phase["attempt"], error=error, retryable=retryable)]
    if may_retry(phase["attempt"], phase["max_attempts"], retryable):
        delay = backoff_seconds(phase["attempt"], ctx.settings.retry_base_s, ctx.settings.retry_max_s)
        at = now + timedelta(seconds=delay)
        queue.finish_phase(conn, phase, PhaseStatus.QUEUED, now, error=error, attempt_status=attempt_status,
                           available_at=at)
        out.append(_ev(EventType.PHASE_REQUEUED, now,
                       f"{name} requeued for attempt {phase['attempt'] + 1} of {phase['max_attempts']} "
                       f"in {delay:.2f} s", name, next_attempt=phase["attempt"] + 1,
                       available_at=at.isoformat(), delay_s=round(delay, 3)))
        dialect.notify(conn, queue.READY_CHANNEL)
        alert_fire.on_events(conn, phase["run_id"], out, now)
        return out
    queue.finish_phase(conn, phase, PhaseStatus.FAILED, now, error=error, attempt_status=attempt_status)
    if event_type is not EventType.PHASE_FAILED:
        out.append(_ev(EventType.PHASE_FAILED, now, f"{name} failed after {phase['attempt']} attempts", name,
                       level="error", attempt=phase["attempt"], error=error))
    for skipped in queue.close_remaining(conn, phase["run_id"], PhaseStatus.SKIPPED, now):
        out.append(_ev(EventType.PHASE_SKIPPED, now, f"{skipped['name']} skipped", skipped["name"]))
    run = queue.get_run(conn, phase["run_id"], lock=True)
    assert run is not None
    queue.set_run_status(conn, run, RunStatus.FAILED, now, error=f"{name}: {error[:1000]}")
    out.append(_ev(EventType.RUN_FAILED, now, f"run failed in {name}", level="error", phase_name=name,
                   error=error[:1000]))
    alert_fire.on_events(conn, phase["run_id"], out, now)  # alerts go to the outbox in this transaction
    return out


def _expire(ctx: Context, conn: Connection, phase: RowMapping, now: datetime, why: str) -> list[dict[str, Any]]:
    events = _fail_phase(ctx, conn, phase, now, why, True, attempt_status=AttemptStatus.EXPIRED.value,
                         event_type=EventType.LEASE_EXPIRED)
    events[0]["level"] = "warning"
    events[0]["message"] = f"{phase['name']} lease of {phase['executor_id']} expired: {why}"
    events[0]["payload"]["executor_id"] = phase["executor_id"]
    queue.append_events(conn, phase["run_id"], events)
    if phase["executor_id"]:
        queue.touch_executor(conn, phase["executor_id"], None, phase["lease_expires_at"] or now, None)
    return events


# --- reaper -------------------------------------------------------------------------------------

def reap(ctx: Context) -> int:
    """Requeue (or fail) phases whose lease expired, that were claimed but never started, or that
    ran past their ``timeout_s``. Returns how many phases it handled."""
    handled = 0
    delays: list[float | None] = []
    with ctx.db.write() as conn:
        now = ctx.clock()
        deadline = now - timedelta(seconds=ctx.settings.claim_start_timeout_s)
        for phase in queue.expired_leases(conn, now, deadline):
            expired = phase["lease_expires_at"] is not None and phase["lease_expires_at"] < now
            why = "no heartbeat before the lease expired" if expired else "claimed but never started"
            delays.append(_retry_delay(_expire(ctx, conn, phase, now, why)))
            handled += 1
        for phase in queue.timed_out_phases(conn, now):
            events = _fail_phase(ctx, conn, phase, now, f"timed out after {phase['timeout_s']} s", True,
                                 attempt_status=AttemptStatus.TIMED_OUT.value)
            queue.append_events(conn, phase["run_id"], events)
            delays.append(_retry_delay(events))
            handled += 1
    if handled:
        ctx.waker.ready()
        _wake_later(ctx, min((d for d in delays if d is not None), default=None))
    return handled


def next_due(ctx: Context) -> datetime | None:
    with ctx.db.read() as conn:
        return queue.next_claim_deadline(conn, ctx.clock())


def ready_state(ctx: Context) -> tuple[bool, float | None]:
    """(is work runnable now, seconds until the next delayed phase becomes runnable): what a
    cross-process watcher needs to wake this process's claim waiters."""
    now = ctx.clock()
    with ctx.db.read() as conn:
        runnable = queue.runnable_now(conn, now)
        due = queue.next_claim_deadline(conn, now)
    return runnable, None if due is None else max(0.0, (due - now).total_seconds())


NO_AUTOVACUUM = ("PostgreSQL runs with autovacuum off: every claim and completion leaves dead row versions "
                 "in the queue's tables (phases, runs, phase_attempts, executors) and claims slow down as they "
                 "pile up; turn it on, or VACUUM those tables often (docs/operations-install.md)")


def database_warnings(ctx: Context) -> list[str]:
    """What about the metadata database an operator should fix (logged when the server starts)."""
    with ctx.db.read() as conn:
        return [NO_AUTOVACUUM] if dialect.autovacuum_off(conn) else []


def _succeeded_runs(done: dict[int, dict[str, Any]]) -> list[str]:
    """Runs a set-based completion finished (their alerts resolve, their scores are due)."""
    return [d["run_id"] for d in done.values() if d["run_status"] == RunStatus.SUCCEEDED.value]
