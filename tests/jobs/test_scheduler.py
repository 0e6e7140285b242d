"""The scheduler with a fake clock: ticks, catch-up, DST, pause/resume, end date, triggers, cycles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lakehouse.domain import schedules
from lakehouse.domain.principal import Principal
from lakehouse.services import jobs, runs, scheduler
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from lakehouse.store.tables import runs as runs_table
from tests.clock_support import Clock
from tests.jobs.conftest import scheduled, sql_job


def logical_dates(ctx: Context, job: str) -> list[str]:
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import job_runs

    return sorted(r["logical_date"].isoformat() for r in job_runs.job_runs(ctx, SYSTEM, "default", job, 500)
                  if r["logical_date"])


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc, arg-type]


def test_each_tick_runs_once(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("hourly", "0 * * * *"))
    clock.set(utc(2024, 1, 1, 13, 0, 5))
    assert scheduler.tick(ctx).scheduled == 1
    assert scheduler.tick(ctx).scheduled == 0  # the same pass again
    clock.set(utc(2024, 1, 1, 13, 30))
    assert scheduler.tick(ctx).scheduled == 0
    clock.set(utc(2024, 1, 1, 14, 0, 1))
    assert scheduler.tick(ctx).scheduled == 1
    assert logical_dates(ctx, "hourly") == ["2024-01-01T13:00:00+00:00", "2024-01-01T14:00:00+00:00"]
    run_id = next(r for r in runs.list_runs(ctx, admin) if r["spec_slug"] == "hourly")["run_id"]
    run = runs.get_run(ctx, run_id, admin)
    assert run["idempotency_key"].startswith("job:") and run["labels"]["trigger"] == "schedule"
    assert run["input_manifest"]["job"]["params"]["logical_date"] == run["labels"]["logical_date"]


def test_a_tick_is_never_created_twice_even_when_the_state_is_stale(ctx: Context, clock: Clock,
                                                                    admin: Principal) -> None:
    """Two processes (or a restart) that both see a tick due: the idempotency key makes one run."""
    saved = jobs.save(ctx, admin, "default", scheduled("hourly", "0 * * * *"))
    clock.set(utc(2024, 1, 1, 13, 0, 5))
    assert scheduler.tick(ctx).scheduled == 1
    from lakehouse.store import jobs as store

    with ctx.db.write() as conn:  # rewind the job's state as a second process would have it
        store.set_ticks(conn, [{"job_id": saved.job["id"], "next_fire_at": utc(2024, 1, 1, 13),
                                "last_tick_at": utc(2024, 1, 1, 12)}])
    assert scheduler.tick(ctx).scheduled == 0
    assert len(logical_dates(ctx, "hourly")) == 1


@pytest.mark.parametrize(("policy", "expected"), [
    ("none", []),
    ("latest", ["2024-01-01T17:00:00+00:00"]),
    ("all", ["2024-01-01T15:00:00+00:00", "2024-01-01T16:00:00+00:00", "2024-01-01T17:00:00+00:00"]),
])
def test_catch_up_policies(ctx: Context, clock: Clock, admin: Principal, policy: str, expected: list[str]) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 * * * *", catchup=policy, max_catchup=3))
    clock.set(utc(2024, 1, 1, 17, 20))  # the scheduler was down from 12:00 to 17:20 (5 ticks missed)
    result = scheduler.tick(ctx)
    assert logical_dates(ctx, "h") == expected
    assert result.skipped == 5 - len(expected)


def test_catch_up_none_runs_a_tick_within_grace(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 * * * *", catchup="none"))
    clock.set(utc(2024, 1, 1, 15, 1))
    scheduler.tick(ctx)
    assert logical_dates(ctx, "h") == ["2024-01-01T15:00:00+00:00"]


def test_pause_skips_and_resume_restarts_from_now(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 * * * *", catchup="all"))
    jobs.set_paused(ctx, admin, "default", "h", True)
    assert jobs.get_job(ctx, admin, "default", "h")["next_fires"] == []
    clock.set(utc(2024, 1, 1, 15, 30))
    assert scheduler.tick(ctx).scheduled == 0
    jobs.set_paused(ctx, admin, "default", "h", False)
    assert jobs.get_job(ctx, admin, "default", "h")["next_fires"][0] == utc(2024, 1, 1, 16)
    clock.set(utc(2024, 1, 1, 16, 0, 1))
    scheduler.tick(ctx)
    assert logical_dates(ctx, "h") == ["2024-01-01T16:00:00+00:00"]


def test_start_and_end_dates(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", scheduled("h", "0 * * * *", catchup="all", start="2024-01-01T14:00:00",
                                               end="2024-01-01T16:00:00"))
    assert jobs.get_job(ctx, admin, "default", "h")["next_fires"] == [utc(2024, 1, 1, h) for h in (14, 15, 16)]
    for hour in range(13, 20):
        clock.set(utc(2024, 1, 1, hour, 0, 1))
        scheduler.tick(ctx)
    assert logical_dates(ctx, "h") == [f"2024-01-01T{h}:00:00+00:00" for h in (14, 15, 16)]
    assert jobs.get_job(ctx, admin, "default", "h")["next_fire_at"] is None


def _walk(ctx: Context, clock: Clock, start: datetime, end: datetime, step_min: int = 47) -> None:
    from datetime import timedelta

    at = start
    while at <= end:
        clock.set(at)
        scheduler.tick(ctx)
        at += timedelta(minutes=step_min)


def test_dst_europe_berlin(ctx: Context, clock: Clock, admin: Principal) -> None:
    clock.set(utc(2024, 3, 29, 12))
    jobs.save(ctx, admin, "default", scheduled("berlin", "30 2 * * *", "Europe/Berlin", catchup="all"))
    jobs.save(ctx, admin, "default", scheduled("halfhourly", "*/30 1-3 27 10 *", "Europe/Berlin", catchup="all"))
    _walk(ctx, clock, utc(2024, 3, 29, 12), utc(2024, 4, 2))
    # 02:30 does not exist on 31 March (spring forward): that day runs once, at 03:00 CEST
    assert logical_dates(ctx, "berlin") == ["2024-03-30T01:30:00+00:00", "2024-03-31T01:00:00+00:00",
                                            "2024-04-01T00:30:00+00:00"]
    clock.set(utc(2024, 10, 26, 12))
    jobs.set_paused(ctx, admin, "default", "halfhourly", True)
    jobs.set_paused(ctx, admin, "default", "halfhourly", False)
    _walk(ctx, clock, utc(2024, 10, 26, 12), utc(2024, 10, 27, 4))
    # 27 October: 02:00-02:59 happens twice (CEST then CET); a sub-hourly schedule fires on both passes
    assert logical_dates(ctx, "halfhourly") == [
        "2024-10-26T23:00:00+00:00", "2024-10-26T23:30:00+00:00",  # 01:00, 01:30 CEST
        "2024-10-27T00:00:00+00:00", "2024-10-27T00:30:00+00:00",  # 02:00, 02:30 CEST
        "2024-10-27T01:00:00+00:00", "2024-10-27T01:30:00+00:00",  # 02:00, 02:30 CET
        "2024-10-27T02:00:00+00:00", "2024-10-27T02:30:00+00:00",  # 03:00, 03:30 CET
    ]


def test_dst_new_york_daily_runs_once_a_day(ctx: Context, clock: Clock, admin: Principal) -> None:
    clock.set(utc(2024, 11, 2, 12))
    jobs.save(ctx, admin, "default", scheduled("ny", "30 1 * * *", "America/New_York", catchup="all"))
    _walk(ctx, clock, utc(2024, 11, 2, 12), utc(2024, 11, 4, 12))
    # 01:30 exists twice on 3 November (fall back): a daily schedule runs once, on the first pass (EDT)
    assert logical_dates(ctx, "ny") == ["2024-11-03T05:30:00+00:00", "2024-11-04T06:30:00+00:00"]


def test_fire_times_in_spring_forward_new_york() -> None:
    fires = schedules.next_fires("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12), 3)
    assert fires == [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)]


def _finish(ctx: Context, run_id: str, status: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    with ctx.db.write() as conn:  # the worker's outcome, without a worker
        conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
            status=status, finished_at=ctx.clock() + timedelta(seconds=1)))


def test_trigger_chain(ctx: Context, clock: Clock, admin: Principal) -> None:
    from lakehouse.services import job_runs

    jobs.save(ctx, admin, "default", sql_job("extract"))
    jobs.save(ctx, admin, "default", {**sql_job("load"), "triggers": [{"on_success_of": "extract"}]})
    jobs.save(ctx, admin, "default", {**sql_job("report"), "triggers": [{"on_success_of": "load"}]})
    up, _ = job_runs.run_job(ctx, admin, "default", "extract")
    assert scheduler.tick(ctx).triggered == 0
    _finish(ctx, up["run_id"], "succeeded")
    assert scheduler.tick(ctx).triggered == 1
    assert scheduler.tick(ctx).triggered == 0
    load = job_runs.job_runs(ctx, admin, "default", "load")
    assert len(load) == 1 and load[0]["trigger"] == "upstream"
    load_run = runs.get_run(ctx, load[0]["run_id"], admin)
    assert load_run["input_manifest"]["job"]["params"]["upstream_run_id"] == up["run_id"]
    _finish(ctx, load[0]["run_id"], "failed")
    assert scheduler.tick(ctx).triggered == 0
    assert job_runs.job_runs(ctx, admin, "default", "report") == []


def test_trigger_cycles_and_unknown_upstreams_are_refused(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job("a"))
    jobs.save(ctx, admin, "default", {**sql_job("b"), "triggers": [{"on_success_of": "a"}]})
    jobs.save(ctx, admin, "default", {**sql_job("c"), "triggers": [{"on_success_of": "b"}]})
    with pytest.raises(InvalidInput) as exc:
        jobs.save(ctx, admin, "default", {**sql_job("a"), "triggers": [{"on_success_of": "c"}]})
    assert exc.value.code == "trigger_cycle" and "a → c → b → a" in exc.value.message
    assert jobs.get_job(ctx, admin, "default", "a")["version"] == 1
    with pytest.raises(InvalidInput):
        jobs.save(ctx, admin, "default", {**sql_job("d"), "triggers": [{"on_success_of": "ghost"}]})
    with pytest.raises(InvalidInput):
        jobs.save(ctx, admin, "default", {**sql_job("e"), "triggers": [{"on_success_of": "e"}]})


@pytest.mark.parametrize(("schedule", "field"), [
    ({"cron": "61 * * * *"}, "schedule.cron"),
    ({"cron": "* * *"}, "schedule.cron"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
    ({"cron": "0 2 * * *", "catchup": "sometimes"}, "schedule.catchup"),
])
def test_bad_schedules_are_refused(ctx: Context, clock: Clock, admin: Principal, schedule: dict[str, Any],
                                   field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        jobs.save(ctx, admin, "default", {**sql_job("s"), "schedule": schedule})
    assert exc.value.details[0]["field"] == field
    assert jobs.list_jobs(ctx, admin) == []


def test_scheduled_job_needs_defaults(ctx: Context, clock: Clock, admin: Principal) -> None:
    job = {"name": "s", "type": "sql", "params": {"x": {"type": "int"}}, "sql": {"query": "SELECT {{ x }}"},
           "schedule": {"cron": "0 2 * * *"}}
    with pytest.raises(InvalidInput) as exc:
        jobs.save(ctx, admin, "default", job)
    assert "missing: x" in exc.value.message


def test_queue_caps_apply_to_job_runs(ctx: Context, clock: Clock, admin: Principal) -> None:
    """A manual job run over a full ``reject`` queue cap is refused (429, nothing created); scheduled
    ticks are never lost to it: they are held with the reason and released when the queue has room."""
    from lakehouse.services import caps, job_runs
    from lakehouse.services.errors import RateLimited

    cap = caps.set_cap(ctx, admin, "default", "workspace", None, {"max_queued_runs": 1}, "reject")
    jobs.save(ctx, admin, "default", sql_job("daily"))
    job_runs.run_job(ctx, admin, "default", "daily")
    before = len(runs.list_runs(ctx, admin))
    with pytest.raises(RateLimited) as e:
        job_runs.run_job(ctx, admin, "default", "daily")
    assert e.value.code == "queue_cap" and e.value.details["cap_id"] == cap["id"]
    assert len(runs.list_runs(ctx, admin)) == before  # nothing half-created

    jobs.save(ctx, admin, "default", scheduled("h", "0 * * * *", catchup="all"))
    clock.set(utc(2024, 1, 1, 13, 0, 5))
    scheduler.tick(ctx)
    clock.set(utc(2024, 1, 1, 15, 0, 5))
    scheduler.tick(ctx)
    ticks = [r for r in runs.list_runs(ctx, admin) if r["spec_slug"] == "h"]
    assert len(ticks) == 3  # 13:00, 14:00, 15:00: none lost
    held = [runs.get_run(ctx, r["run_id"], admin)["held"] for r in ticks]
    assert all(h is not None and h["cap_id"] == cap["id"] for h in held)
