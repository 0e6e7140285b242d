"""Backfills: one run per logical date, a concurrency limit the scheduler honours, progress, cancel,
retry of the failed runs only."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import update

from lakehouse.domain.principal import Principal
from lakehouse.services import backfills, job_runs, jobs, scheduler
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from lakehouse.store.tables import runs as runs_table
from tests.clock_support import Clock
from tests.jobs.conftest import scheduled, sql_job


def _finish(ctx: Context, run_ids: list[str], status: str) -> None:
    with ctx.db.write() as conn:
        conn.execute(update(runs_table).where(runs_table.c.id.in_(run_ids)).values(
            status=status, finished_at=ctx.clock() + timedelta(seconds=1)))


def _released_open(ctx: Context, admin: Principal, job: str) -> list[str]:
    from lakehouse.services import runs

    out = []
    for r in job_runs.job_runs(ctx, admin, "default", job, 500):
        run = runs.get_run(ctx, r["run_id"], admin)
        if run["status"] == "queued" and run["phases"][0]["status"] == "queued":
            out.append(r["run_id"])
    return out


def test_backfill_runs_per_day_with_a_concurrency_limit(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", {**sql_job(), "sql": {"query": "SELECT {{ logical_date }} AS d"}})
    b = backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 1, 10), max_concurrent=3)
    assert b["total"] == 10 and b["progress"]["queued"] == 10 and b["progress"]["waiting"] == 7
    runs_of = job_runs.job_runs(ctx, admin, "default", "daily", 500)
    assert sorted(r["logical_date"].date().isoformat() for r in runs_of) == \
        [f"2024-01-{d:02d}" for d in range(1, 11)]
    first = _released_open(ctx, admin, "daily")
    assert len(first) == 3
    assert scheduler.tick(ctx).released == 0  # no slot free
    _finish(ctx, first[:2], "succeeded")
    assert scheduler.tick(ctx).released == 2
    assert len(_released_open(ctx, admin, "daily")) == 3
    _finish(ctx, _released_open(ctx, admin, "daily"), "failed")
    for _ in range(5):
        scheduler.tick(ctx)
        _finish(ctx, _released_open(ctx, admin, "daily"), "succeeded")
    scheduler.tick(ctx)
    b = backfills.get(ctx, admin, b["id"])
    assert b["status"] == "failed"
    assert b["progress"] == {"done": 7, "running": 0, "failed": 3, "cancelled": 0, "queued": 0, "waiting": 0}
    retried = backfills.retry_failed(ctx, admin, b["id"])
    assert retried["status"] == "running" and retried["retried"] == 3
    assert retried["progress"]["done"] == 7 and retried["progress"]["queued"] == 3
    _finish(ctx, _released_open(ctx, admin, "daily"), "succeeded")
    scheduler.tick(ctx)
    assert backfills.get(ctx, admin, b["id"])["status"] == "succeeded"


def test_backfill_follows_the_schedule_and_partitions(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 */6 * * *", "Europe/Berlin"))
    b = backfills.create(ctx, admin, "default", "h", date(2024, 1, 1), date(2024, 1, 2), partitions=["de", "fr"])
    assert b["total"] == 2 * 4 * 2


def test_cancel_a_whole_backfill(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job())
    b = backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 3, 31), max_concurrent=2)
    done = backfills.cancel(ctx, admin, b["id"])
    assert done["status"] == "cancelled" and done["progress"]["cancelled"] == 91
    assert scheduler.tick(ctx).released == 0


def test_bad_backfills_change_nothing(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job())
    with pytest.raises(InvalidInput):
        backfills.create(ctx, admin, "default", "daily", date(2024, 2, 1), date(2024, 1, 1))
    with pytest.raises(InvalidInput):
        backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 1, 2), params={"limit": "x"})
    ctx.settings.backfill_max_runs = 10
    with pytest.raises(InvalidInput):
        backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 1, 31))
    assert backfills.list_for_job(ctx, admin, "default", "daily") == []
    assert job_runs.job_runs(ctx, admin, "default", "daily") == []


def _counts(ctx: Context, backfill_id: str) -> dict[str, int]:
    """Rows of a backfill's runs in every table a run is written to."""
    from sqlalchemy import func, select

    from lakehouse.domain.states import PhaseStatus
    from lakehouse.store.tables import job_runs as links
    from lakehouse.store.tables import phases, run_events

    of = select(links.c.run_id).where(links.c.backfill_id == backfill_id).scalar_subquery()
    with ctx.db.read() as conn:
        return {
            "job_runs": conn.execute(select(func.count()).select_from(links)
                                     .where(links.c.backfill_id == backfill_id)).scalar_one(),
            "runs": conn.execute(select(func.count()).select_from(runs_table).where(runs_table.c.id.in_(of)))
            .scalar_one(),
            "phases": conn.execute(select(func.count()).select_from(phases).where(phases.c.run_id.in_(of)))
            .scalar_one(),
            "events": conn.execute(select(func.count()).select_from(run_events).where(run_events.c.run_id.in_(of)))
            .scalar_one(),
            "dates": conn.execute(select(func.count(links.c.logical_date.distinct()))
                                  .where(links.c.backfill_id == backfill_id)).scalar_one(),
            "queued_first_phases": conn.execute(
                select(func.count()).select_from(phases)
                .where(phases.c.run_id.in_(of), phases.c.idx == 0,
                       phases.c.status == PhaseStatus.QUEUED.value)).scalar_one(),
        }


def test_a_backfill_writes_exactly_its_rows_and_a_repeated_insert_writes_none(
        ctx: Context, clock: Clock, admin: Principal) -> None:
    import uuid
    from dataclasses import replace

    from sqlalchemy import select

    from lakehouse.domain.jobs import JobDefinition, RunTrigger
    from lakehouse.services import workspaces
    from lakehouse.services.job_runs import build_request
    from lakehouse.store import jobs as store

    # two phases per run (transform, publish): 40 runs are 80 phases, 40 RUN_CREATED events, 40 job links
    jobs.save(ctx, admin, "default", {**sql_job(), "sql": {"query": "SELECT {{ logical_date }} AS d",
                                                          "target": "silver.backfilled"}})
    b = backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 2, 9), max_concurrent=4)
    assert b["total"] == 40
    written = {"job_runs": 40, "runs": 40, "phases": 80, "events": 40, "dates": 40, "queued_first_phases": 4}
    assert _counts(ctx, b["id"]) == written
    # the runs again, with their idempotency keys (a retried transaction, a second process): nothing is
    # written; in a batch that mixes old keys with new ones only the new runs get rows
    ws_id = workspaces.resolve_for(ctx, admin, "default")
    with ctx.db.read() as conn:
        job = store.get_job(conn, ws_id, "daily")
        assert job is not None
        v = store.get_version(conn, job["id"], job["current_version"])
        links = store.runs_of_job(conn, job["id"], 500)
        ids = [r["run_id"] for r in links]
        keys: dict[str, str] = {str(r[0]): str(r[1]) for r in conn.execute(
            select(runs_table.c.id, runs_table.c.idempotency_key).where(runs_table.c.id.in_(ids)))}
    assert v is not None
    d = JobDefinition.model_validate(v["definition"])

    def new_run(key: str, at: object) -> store.NewRun:
        req = build_request(ctx, workspace="default", workspace_id=ws_id, job_id=job["id"], version=v, d=d,
                            params={"day": "2024-01-01", "limit": 10, "logical_date": str(at)},
                            environment="dev", trigger=RunTrigger.BACKFILL, idempotency_key=key, validate=False)
        return store.NewRun(run_id=str(uuid.uuid4()), workspace_id=ws_id, request=req, job_id=job["id"],
                            version=int(v["version"]), trigger=RunTrigger.BACKFILL.value, created_by=admin.name,
                            logical_date=clock(), backfill_id=b["id"], released=True)

    again = [new_run(keys[r["run_id"]], r["logical_date"]) for r in links]
    with ctx.db.write() as conn:
        assert store.insert_runs(conn, again, clock()) == []
    assert _counts(ctx, b["id"]) == written
    fresh = [new_run(f"backfill:{b['id']}:extra:{i}", clock()) for i in range(3)]
    mixed = [replace(n, run_id=str(uuid.uuid4())) for n in again[:5]] + fresh
    with ctx.db.write() as conn:
        made = store.insert_runs(conn, mixed, clock())
    assert made == [n.run_id for n in fresh]
    after = _counts(ctx, b["id"])
    assert (after["job_runs"], after["runs"], after["phases"], after["events"]) == (43, 43, 86, 43)
