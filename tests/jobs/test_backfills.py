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
from tests.jobs.conftest import FakeClock, scheduled, sql_job


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


def test_backfill_runs_per_day_with_a_concurrency_limit(ctx: Context, clock: FakeClock, admin: Principal) -> None:
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


def test_backfill_follows_the_schedule_and_partitions(ctx: Context, clock: FakeClock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 */6 * * *", "Europe/Berlin"))
    b = backfills.create(ctx, admin, "default", "h", date(2024, 1, 1), date(2024, 1, 2), partitions=["de", "fr"])
    assert b["total"] == 2 * 4 * 2


def test_cancel_a_whole_backfill(ctx: Context, clock: FakeClock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job())
    b = backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 3, 31), max_concurrent=2)
    done = backfills.cancel(ctx, admin, b["id"])
    assert done["status"] == "cancelled" and done["progress"]["cancelled"] == 91
    assert scheduler.tick(ctx).released == 0


def test_bad_backfills_change_nothing(ctx: Context, clock: FakeClock, admin: Principal) -> None:
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
