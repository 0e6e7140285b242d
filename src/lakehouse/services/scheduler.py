"""The scheduler: one pass (``tick``) turns due cron ticks into runs, starts the jobs that run after
a job that just succeeded, and gives backfills their free concurrency slots. Time is passed in.

Every run it creates carries an idempotency key unique in its workspace (``job:<id>:tick:<instant>``,
``job:<id>:after:<run id>``), inserted with ON CONFLICT DO NOTHING: a restart, a pass repeated, or two
control-plane processes on one PostgreSQL never create a tick twice. On PostgreSQL the due jobs are
also locked with SKIP LOCKED, so two schedulers share the work instead of both doing it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain import schedules
from lakehouse.domain.jobs import JobDefinition, ParamError, RunTrigger, resolve_params
from lakehouse.domain.states import RunStatus
from lakehouse.services import backfills, caps, promotions
from lakehouse.services.context import Context
from lakehouse.services.errors import ServiceError
from lakehouse.services.job_runs import build_request
from lakehouse.store import jobs as store
from lakehouse.store import queue

log = logging.getLogger(__name__)
BATCH = 1000


@dataclass(frozen=True)
class TickResult:
    scheduled: int = 0  # runs created for cron ticks
    skipped: int = 0  # ticks not run (catch-up policy, or a job that cannot build its run)
    triggered: int = 0  # runs created because an upstream job succeeded
    released: int = 0  # backfill runs given a concurrency slot
    backfills_finished: int = 0


def tick(ctx: Context, now: datetime | None = None) -> TickResult:
    """One scheduler pass at ``now`` (default: the context's clock)."""
    now = now or ctx.clock()
    scheduled, skipped = _schedules(ctx, now)
    triggered = _triggers(ctx, now)
    released, finished = backfills.release_slots(ctx, now)
    released += caps.release_held(ctx, now)  # runs a queue cap held, once it has room
    if scheduled or triggered or released:
        ctx.waker.ready()
    return TickResult(scheduled, skipped, triggered, released, finished)


def _schedules(ctx: Context, now: datetime) -> tuple[int, int]:
    grace = timedelta(seconds=ctx.settings.scheduler_grace_s)
    made = skipped = 0
    while True:
        with ctx.db.write() as conn:
            due = store.due_jobs(conn, now, BATCH)
            if not due:
                break
            new: list[store.NewRun] = []
            ticks = []
            cache: dict[str, Any] = {}
            for row in due:
                d = JobDefinition.model_validate(row["definition"])
                s = d.schedule
                if s is None:  # pragma: no cover - a job without a schedule has no next_fire_at
                    ticks.append({"job_id": row["id"], "next_fire_at": None, "last_tick_at": now})
                    continue
                start = schedules.localize(s.start, s.timezone) if s.start else None
                end = schedules.localize(s.end, s.timezone) if s.end else None
                last = row["last_tick_at"] or row["created_at"]
                all_due = schedules.fires_between(s.cron, s.timezone, max(last, start - timedelta(microseconds=1))
                                                  if start else last, min(now, end) if end else now, 100_000)
                run_at = schedules.due_ticks(s.cron, s.timezone, last=last, now=now, policy=s.catchup,
                                             max_catchup=s.max_catchup, grace=grace, start=start, end=end)
                skipped += len(all_due) - len(run_at)
                try:
                    new += [_tick_run(ctx, conn, row, d, at, cache) for at in run_at]
                except (ServiceError, ParamError) as exc:
                    skipped += len(run_at)
                    log.warning("scheduled job cannot run", extra={"job": d.name, "error": str(exc)})
                nxt = schedules.next_after(s.cron, s.timezone, max(now, last), start, end)
                ticks.append({"job_id": row["id"], "next_fire_at": nxt, "last_tick_at": max(now, last)})
            made += len(caps.insert_job_runs(conn, new, now, reject=False))
            store.set_ticks(conn, ticks)
        if len(due) < BATCH:
            break
    return made, skipped


def _version(conn: Any, row: Any, d: JobDefinition, environment: str) -> tuple[Any, JobDefinition]:
    """The version (and its definition) a run in ``environment`` uses: the current one in dev, the
    promoted one in stage and prod, never a newer draft (Conflict when nothing is promoted there)."""
    number = promotions.version_for(conn, row, environment, None)
    if number == row["current_version"] and "version_created_by" in row:  # read with the due job
        return {"version": number, "content_hash": row["content_hash"], "git_sha": row["git_sha"],
                "created_by": row["version_created_by"]}, d
    v = store.get_version(conn, row["id"], number)
    assert v is not None
    return v, d if number == row["current_version"] else JobDefinition.model_validate(v["definition"])


def _tick_run(ctx: Context, conn: Any, row: Any, d: JobDefinition, at: datetime, cache: dict[str, Any]
              ) -> store.NewRun:
    """The run of one tick. The schedule (when) is the job's; what runs is the version of the
    schedule's environment."""
    assert d.schedule is not None
    env = d.schedule.environment
    v, d = _version(conn, row, d, env)
    ws_slug = cache.get(f"ws:{row['workspace_id']}")
    if ws_slug is None:
        ws_slug = cache[f"ws:{row['workspace_id']}"] = queue.workspace_slug(conn, row["workspace_id"])
    params = resolve_params(d.params, {}, {"logical_date": at.isoformat()})
    req = build_request(ctx, workspace=ws_slug, workspace_id=row["workspace_id"], job_id=row["id"], version=v, d=d,
                        params=params, environment=env, trigger=RunTrigger.SCHEDULE,
                        logical_date=at, idempotency_key=f"job:{row['id']}:tick:{at.isoformat()}",
                        pipeline_cache=cache)
    return store.NewRun(run_id=str(uuid.uuid4()), workspace_id=row["workspace_id"], request=req, job_id=row["id"],
                        version=int(v["version"]), trigger=RunTrigger.SCHEDULE.value, created_by=v["created_by"],
                        logical_date=at)


def _triggers(ctx: Context, now: datetime) -> int:
    """Start the jobs that run after each job run that succeeded since the last pass."""
    made = 0
    while True:
        with ctx.db.write() as conn:
            finished = store.finished_unfollowed(conn, BATCH)
            if not finished:
                break
            new: list[store.NewRun] = []
            for up in finished:
                if up["status"] != RunStatus.SUCCEEDED.value:
                    continue
                for row in store.downstream_jobs(conn, up["workspace_id"], up["job"]):
                    try:
                        new.append(_trigger_run(ctx, conn, row, up["run_id"], up["job"]))
                    except (ServiceError, ParamError) as exc:
                        log.warning("triggered job cannot run", extra={"job": row["name"], "error": str(exc)})
            made += len(caps.insert_job_runs(conn, new, now, reject=False))
            store.mark_followed(conn, [r["run_id"] for r in finished])
        if len(finished) < BATCH:
            break
    return made


def _trigger_run(ctx: Context, conn: Any, row: Any, upstream_run: str, upstream_job: str) -> store.NewRun:
    d = JobDefinition.model_validate(row["definition"])
    env = d.environment
    v, d = _version(conn, row, d, env)
    ws_slug = queue.workspace_slug(conn, row["workspace_id"])
    params = resolve_params(d.params, {}, {"upstream_run_id": upstream_run})
    req = build_request(ctx, workspace=ws_slug, workspace_id=row["workspace_id"], job_id=row["id"], version=v, d=d,
                        params=params, environment=env, trigger=RunTrigger.UPSTREAM,
                        idempotency_key=f"job:{row['id']}:after:{upstream_run}",
                        extra_labels={"upstream_run_id": upstream_run, "upstream_job": upstream_job})
    return store.NewRun(run_id=str(uuid.uuid4()), workspace_id=row["workspace_id"], request=req, job_id=row["id"],
                        version=int(v["version"]), trigger=RunTrigger.UPSTREAM.value, created_by=v["created_by"])


def upcoming(ctx: Context, principal: Any, within: timedelta) -> list[dict[str, Any]]:
    """What is scheduled from now until ``within`` (for the Overview)."""
    from lakehouse.domain.roles import Action

    principal.require(Action.READ)
    with ctx.db.read() as conn:
        rows = store.next_fires(conn, principal.workspace_ids, ctx.clock() + within)
    return [{"job": r["name"], "workspace": r["workspace"], "next_fire_at": r["next_fire_at"]} for r in rows]


def overview(ctx: Context, principal: Any, within: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    """For the Overview: ticks due within ``within`` (``upcoming``), and jobs whose tick is overdue —
    no scheduler handled it well after its time (``missed``: the scheduler is off or stuck)."""
    from lakehouse.domain.roles import Action

    principal.require(Action.READ)
    now = ctx.clock()
    late = timedelta(seconds=max(60.0, 3 * ctx.settings.scheduler_interval_s))
    with ctx.db.read() as conn:
        rows = store.next_fires(conn, principal.workspace_ids, now + within)
    out: dict[str, Any] = {"upcoming": [], "missed": [], "within_s": within.total_seconds()}
    for r in rows:
        item = {"job": r["name"], "workspace": r["workspace"], "next_fire_at": r["next_fire_at"],
                "late_s": max(0.0, (now - r["next_fire_at"]).total_seconds())}
        out["missed" if r["next_fire_at"] < now - late else "upcoming"].append(item)
    return out


class SchedulerThread(threading.Thread):
    """Calls :func:`tick` every ``LAKEHOUSE_SCHEDULER_INTERVAL_S`` until stopped (inside serve/up)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.ctx = ctx
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                result = tick(self.ctx)
                if result.scheduled or result.triggered or result.released:
                    log.info("scheduler pass", extra=result.__dict__)
            except Exception:
                log.exception("scheduler pass failed; retrying")
            self._stop_event.wait(self.ctx.settings.scheduler_interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self.join(timeout)
