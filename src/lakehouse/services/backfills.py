"""Backfills: one run of a job per logical date (and partition) of a range, created set-based in one
transaction; at most ``max_concurrent`` of them released to the queue at once (each scheduler pass
releases more as they finish); progress, cancel, and retry of the failed runs only."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from lakehouse.domain import schedules
from lakehouse.domain.jobs import (
    BACKFILL_FINISHED,
    BackfillStatus,
    JobDefinition,
    ParamError,
    RunTrigger,
    resolve_params,
)
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import RunStatus
from lakehouse.services import audit, promotions, runs, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.services.job_runs import build_request, param_error, run_ids
from lakehouse.store import jobs as store

MAX_PARTITIONS = 1000


def create(ctx: Context, principal: Principal, workspace: str, job: str, start: date, end: date, *,
           partitions: list[str] | None = None, max_concurrent: int = 4, params: dict[str, Any] | None = None,
           environment: str | None = None) -> dict[str, Any]:
    principal.require(Action.JOB_RUN)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=True)
    principal.require_in(Action.JOB_RUN, ws_id)
    if not 1 <= max_concurrent <= 10_000:
        raise InvalidInput("max_concurrent is between 1 and 10000", code="invalid_backfill",
                           details=[{"field": "max_concurrent", "message": "between 1 and 10000"}])
    parts: list[str | None] = list(partitions) if partitions else [None]
    if len(parts) > MAX_PARTITIONS or any(not p or len(p) > 200 for p in parts if p is not None) \
            or len(set(parts)) != len(parts):
        raise InvalidInput(f"partitions: at most {MAX_PARTITIONS} distinct, non-empty names of up to 200 characters",
                           code="invalid_backfill", details=[{"field": "partitions", "message": "invalid"}])
    with ctx.db.read() as conn:
        row = store.get_job(conn, ws_id, job)
        if row is None or row["status"] != "active":
            raise NotFound(f"job {job!r} not found", code="job_not_found")
        current = store.get_version(conn, row["id"], row["current_version"])
        assert current is not None
        cur = JobDefinition.model_validate(current["definition"])
        env = environment or (cur.schedule.environment if cur.schedule else cur.environment)
        v = store.get_version(conn, row["id"], promotions.version_for(conn, row, env, None))
    assert v is not None
    d = JobDefinition.model_validate(v["definition"])
    s = d.schedule
    limit = max(1, ctx.settings.backfill_max_runs // len(parts))
    try:
        dates = schedules.logical_dates(start, end, s.cron if s else None, s.timezone if s else "UTC", limit)
        resolved = resolve_params(d.params, params)
    except ParamError as exc:
        raise param_error(exc) from None
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_backfill", details=[{"field": "to", "message": str(exc)}]) from None
    backfill_id = str(uuid.uuid4())
    ids = run_ids(len(dates) * len(parts))
    new: list[store.NewRun] = []
    cache: dict[str, Any] = {}  # the pipeline file and its watermarks, read once for all the runs
    i = 0
    for at in dates:
        for part in parts:
            values = {**resolved, "logical_date": at.isoformat(), **({"partition": part} if part else {})}
            req = build_request(ctx, workspace=workspace, workspace_id=ws_id, job_id=row["id"], version=v, d=d,
                                params=values, environment=env, trigger=RunTrigger.BACKFILL, logical_date=at,
                                idempotency_key=f"backfill:{backfill_id}:{i}",
                                extra_labels={"backfill_id": backfill_id, **({"partition": part} if part else {})},
                                pipeline_cache=cache, validate=i == 0)
            new.append(store.NewRun(run_id=ids[i], workspace_id=ws_id, request=req, job_id=row["id"],
                                    version=int(v["version"]), trigger=RunTrigger.BACKFILL.value,
                                    created_by=principal.name, logical_date=at, backfill_id=backfill_id,
                                    released=i < max_concurrent))
            i += 1
    if not new:
        raise InvalidInput("the range holds no tick of the job's schedule", code="invalid_backfill",
                           details=[{"field": "from", "message": "no tick in range"}])
    now = ctx.clock()
    with ctx.db.write() as conn:
        store.insert_backfill(conn, id=backfill_id, job_id=row["id"], workspace_id=ws_id, version=int(v["version"]),
                              environment=env, range_start=start.isoformat(), range_end=end.isoformat(),
                              partitions=partitions or None, params=resolved, max_concurrent=max_concurrent,
                              total=len(new), created_by=principal.name, created_at=now)
        store.insert_runs(conn, new, now)
        audit.record(conn, now, principal, "backfill.create", "backfill", backfill_id, ws_id,
                     {"job": job, "from": start.isoformat(), "to": end.isoformat(), "runs": len(new),
                      "max_concurrent": max_concurrent})
    ctx.waker.ready()
    return get(ctx, principal, backfill_id)


def _row(conn: Any, principal: Principal, backfill_id: str, lock: bool = False) -> Any:
    row = store.get_backfill(conn, backfill_id, lock=lock)
    if row is None or not principal.can_see(row["workspace_id"]):
        raise NotFound(f"backfill {backfill_id} not found", code="backfill_not_found")
    return row


def _render(conn: Any, row: Any) -> dict[str, Any]:
    c = store.backfill_counts(conn, row["id"])
    return {
        "id": row["id"], "job": row["job"], "workspace": row["workspace"], "version": row["version"],
        "environment": row["environment"], "status": row["status"], "from": row["range_start"],
        "to": row["range_end"], "partitions": row["partitions"], "params": row["params"],
        "max_concurrent": row["max_concurrent"], "total": row["total"], "created_by": row["created_by"],
        "created_at": row["created_at"], "finished_at": row["finished_at"],
        "progress": {"done": c[RunStatus.SUCCEEDED.value], "running": c[RunStatus.RUNNING.value],
                     "failed": c[RunStatus.FAILED.value], "cancelled": c[RunStatus.CANCELLED.value],
                     "queued": c[RunStatus.QUEUED.value] + c["waiting"], "waiting": c["waiting"]},
        "retried": store.retries_of(conn, row["id"]),
    }


def get(ctx: Context, principal: Principal, backfill_id: str) -> dict[str, Any]:
    principal.require(Action.READ)
    with ctx.db.read() as conn:
        return _render(conn, _row(conn, principal, backfill_id))


def list_for_job(ctx: Context, principal: Principal, workspace: str, job: str) -> list[dict[str, Any]]:
    principal.require(Action.READ)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(Action.READ, ws_id)
    with ctx.db.read() as conn:
        row = store.get_job(conn, ws_id, job)
        if row is None or row["status"] != "active":
            raise NotFound(f"job {job!r} not found", code="job_not_found")
        return [_render(conn, b) for b in store.list_backfills(conn, row["id"])]


def cancel(ctx: Context, principal: Principal, backfill_id: str) -> dict[str, Any]:
    """Cancel the whole backfill: waiting runs set-based, released ones like any run (leases revoked)."""
    principal.require(Action.RUN_CANCEL)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _row(conn, principal, backfill_id, lock=True)
        principal.require_in(Action.RUN_CANCEL, row["workspace_id"])
        if BackfillStatus(row["status"]) in BACKFILL_FINISHED:
            raise Conflict(f"backfill {backfill_id} is already {row['status']}", code="backfill_finished")
        store.set_backfill_status(conn, row, BackfillStatus.CANCELLED, now)
        n = store.cancel_waiting(conn, backfill_id, now, "backfill cancelled", principal.name)
        active = store.active_released(conn, backfill_id)
        audit.record(conn, now, principal, "backfill.cancel", "backfill", backfill_id, row["workspace_id"],
                     {"waiting_cancelled": n, "running_cancelled": len(active)})
    for run_id in active:
        try:
            runs.cancel_run(ctx, run_id, principal, reason="backfill cancelled")
        except Conflict:  # finished meanwhile
            pass
    return get(ctx, principal, backfill_id)


def retry_failed(ctx: Context, principal: Principal, backfill_id: str) -> dict[str, Any]:
    """New runs (same version, parameters, logical date) for the backfill's failed and cancelled runs
    only; they wait for slots like the others."""
    principal.require(Action.JOB_RUN)
    with ctx.db.read() as conn:
        row = _row(conn, principal, backfill_id)
        principal.require_in(Action.JOB_RUN, row["workspace_id"])
        failed = store.failed_runs(conn, backfill_id)
        v = store.get_version(conn, row["job_id"], row["version"])
    if not failed:
        raise Conflict(f"backfill {backfill_id} has no failed runs", code="nothing_to_retry")
    assert v is not None
    d = JobDefinition.model_validate(v["definition"])
    attempt = uuid.uuid4().hex[:8]
    ids = run_ids(len(failed))
    new = []
    for f, run_id in zip(failed, ids, strict=True):
        params = dict(((f["input_manifest"] or {}).get("job") or {}).get("params") or {})
        req = build_request(ctx, workspace=row["workspace"], workspace_id=row["workspace_id"], job_id=row["job_id"],
                            version=v, d=d, params=params, environment=row["environment"],
                            trigger=RunTrigger.BACKFILL, logical_date=f["logical_date"],
                            idempotency_key=f"backfill:{backfill_id}:retry:{attempt}:{f['run_id']}",
                            extra_labels={"backfill_id": backfill_id, "retry_of": f["run_id"],
                                          **({"partition": str(params["partition"])} if "partition" in params else {})})
        new.append(store.NewRun(run_id=run_id, workspace_id=row["workspace_id"], request=req,
                                job_id=row["job_id"], version=row["version"], trigger=RunTrigger.BACKFILL.value,
                                created_by=principal.name, logical_date=f["logical_date"], backfill_id=backfill_id,
                                released=False))
    now = ctx.clock()
    with ctx.db.write() as conn:
        current = _row(conn, principal, backfill_id, lock=True)
        if current["status"] != BackfillStatus.RUNNING.value:
            store.set_backfill_status(conn, current, BackfillStatus.RUNNING, now)
        store.supersede(conn, [f["run_id"] for f in failed])
        store.insert_runs(conn, new, now)
        audit.record(conn, now, principal, "backfill.retry", "backfill", backfill_id, row["workspace_id"],
                     {"runs": len(new)})
    release_slots(ctx, now)
    return get(ctx, principal, backfill_id)


def release_slots(ctx: Context, now: datetime) -> tuple[int, int]:
    """Give every running backfill its free slots; finish those whose runs all finished.
    Returns (runs released, backfills finished)."""
    released = finished = 0
    with ctx.db.read() as conn:
        ids = [r["id"] for r in store.running_backfills(conn)]
    for backfill_id in ids:
        with ctx.db.write() as conn:
            row = store.get_backfill(conn, backfill_id, lock=True)
            if row is None or row["status"] != BackfillStatus.RUNNING.value:
                continue
            active = len(store.active_released(conn, backfill_id))
            got = store.release(conn, backfill_id, row["max_concurrent"] - active, now)
            released += len(got)
            if not got and active == 0:
                c = store.backfill_counts(conn, backfill_id)
                if not c["waiting"] and not c[RunStatus.QUEUED.value] and not c[RunStatus.RUNNING.value]:
                    ok = c[RunStatus.FAILED.value] == 0 and c[RunStatus.CANCELLED.value] == 0
                    store.set_backfill_status(conn, row, BackfillStatus.SUCCEEDED if ok else BackfillStatus.FAILED,
                                              now)
                    finished += 1
    return released, finished


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field}: expected a date (YYYY-MM-DD), got {value!r}", code="invalid_backfill",
                           details=[{"field": field, "message": "expected a date (YYYY-MM-DD)"}]) from None
