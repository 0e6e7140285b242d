"""Two real `lakehouse serve` processes on one PostgreSQL database: every tick of a schedule becomes
exactly one run, also when the leader (api/leader.py) is killed and the other process takes over and
replays the same 50 ticks.

Time is real (the scheduler reads the wall clock in `serve`): the 50 ticks are the minutes missed
while "no scheduler ran" — the job's scheduler state is set 50 minutes back, as after an outage, with
catch-up ``all`` — so one pass owes all 50. After the first leader made them it is killed (SIGKILL),
the state is set back again (a replay: the new leader computes the same 50 ticks) and the other
process must create nothing twice: each tick's idempotency key ``job:<id>:tick:<instant>`` exists once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import jobs
from lakehouse.services.context import Context
from lakehouse.store.tables import job_runs, runs
from lakehouse.store.tables import jobs as jobs_table
from tests.e2e.harness import Server, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]
TICKS = 50


@pytest.fixture
def servers(ctx: Context, tmp_path: Path) -> Iterator[list[Server]]:
    import os

    env = {**os.environ, "LAKEHOUSE_HOME": str(ctx.settings.home), "LAKEHOUSE_DATABASE_URL": ctx.settings.database_url,
           "LAKEHOUSE_PROCESSES": "1", "LAKEHOUSE_SECRET_KEY": ctx.settings.secret_key,
           "LAKEHOUSE_SCHEDULER_INTERVAL_S": "0.2"}
    started: list[Server] = []
    try:
        for name in ("a", "b"):
            logs = tmp_path / name
            logs.mkdir()
            server = Server(env, free_port(), logs)
            server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            server.kill(signal.SIGTERM)


def _leads(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base}/ready", timeout=5).json()["checks"].get("scheduler") is True
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def _outage(ctx: Context, job_id: int, since: datetime) -> None:
    """The scheduler state of a job whose last pass was at ``since`` (every later tick is owed)."""
    with ctx.db.write() as conn:
        conn.execute(update(jobs_table).where(jobs_table.c.id == job_id)
                     .values(last_tick_at=since, next_fire_at=since + timedelta(minutes=1)))


def _ticks(ctx: Context, job_id: int) -> dict[datetime, int]:
    with ctx.db.read() as conn:
        rows = conn.execute(select(job_runs.c.logical_date, func.count())
                            .join(runs, runs.c.id == job_runs.c.run_id)
                            .where(job_runs.c.job_id == job_id).group_by(job_runs.c.logical_date)).all()
    return {r[0].astimezone(UTC): int(r[1]) for r in rows}


def _last_tick(ctx: Context, job_id: int) -> Any:
    with ctx.db.read() as conn:
        return conn.execute(select(jobs_table.c.last_tick_at).where(jobs_table.c.id == job_id)).scalar_one()


def test_each_tick_once_across_two_servers_and_a_leader_kill(ctx: Context, servers: list[Server]) -> None:
    saved = jobs.save(ctx, SYSTEM, "default", {
        "name": "every_minute", "type": "sql", "sql": {"query": "SELECT {{ logical_date }} AS at"},
        "schedule": {"cron": "* * * * *", "timezone": "UTC", "catchup": "all", "max_catchup": 200}}).job
    job_id = int(saved["id"])
    leader = wait_for(lambda: [s for s in servers if _leads(s)], 60, 0.2, "a leader")
    assert len(leader) == 1, "exactly one process leads"
    first = leader[0]
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=TICKS)
    expected = {since + timedelta(minutes=i) for i in range(1, TICKS + 1)}

    _outage(ctx, job_id, since)
    wait_for(lambda: expected <= set(_ticks(ctx, job_id)), 60, 0.2, f"the leader to create the {TICKS} ticks")
    made = _ticks(ctx, job_id)
    assert all(n == 1 for n in made.values()), {k: n for k, n in made.items() if n != 1}

    first.kill(signal.SIGKILL)  # its lease connection closes with it: the other process takes over
    _outage(ctx, job_id, since)  # and replays the same 50 ticks
    second = next(s for s in servers if s is not first)
    wait_for(lambda: _leads(second), 60, 0.2, "the other process to take the leader lease")
    wait_for(lambda: _last_tick(ctx, job_id) > since, 60, 0.2, "the new leader's pass over the job")

    after = _ticks(ctx, job_id)
    assert expected <= set(after)
    duplicated = {k: n for k, n in after.items() if n != 1}
    assert not duplicated, f"ticks created more than once: {duplicated}"
    with ctx.db.read() as conn:
        found = conn.execute(select(runs.c.idempotency_key).join(job_runs, job_runs.c.run_id == runs.c.id)
                             .where(job_runs.c.job_id == job_id)).all()
    keys = [str(row[0]) for row in found]
    assert len(keys) == len(set(keys)) == len(after)
    assert {f"job:{job_id}:tick:{t.isoformat()}" for t in expected} <= set(keys)
