"""Scheduler benchmark on PostgreSQL (a fresh database per run, dropped at the end).

    .venv/bin/python bench/scheduler.py [--jobs 1000] [--ticks 10] [--backfill-runs 10000] [--quick]
    .venv/bin/python bench/scheduler.py --backfill-only [--skip-server] [--explain] [--profile]

Prints one JSON document on stdout and a summary on stderr. Figures:

1. **Ticks.** ``--jobs`` jobs on a one-minute schedule (``* * * * *``). The scheduler (the same
   ``services.scheduler.tick`` that `lakehouse serve` runs every ``LAKEHOUSE_SCHEDULER_INTERVAL_S``)
   is driven with explicit time in this process: for each of ``--ticks`` minutes, one pass runs at
   exactly the tick's instant. *tick → run created lag* is the wall time from the start of that pass
   to the commit that made each job's run (a pass makes up to 1,000 runs per transaction, so the
   runs of one batch share it); p50/p99 over every run of every tick. In `serve` add the wait for the
   next pass: up to one scheduler interval. *CPU per tick*: this process (the control plane's
   scheduler code) and the PostgreSQL backends serving the benchmark's database, per pass.
2. **Backfill.** A job with ``--backfill-runs`` logical dates (one per day), created through
   ``services.backfills.create`` in this process and again through ``POST /api/jobs/{job}/backfills``
   on a real `lakehouse serve` (creation time: the service call / the HTTP call). Then 2 real
   `lakehouse worker` processes drain the HTTP one: *drain time* runs from the backfill's creation to
   the last run's ``finished_at``. The job model has no ``noop`` type, so the job is a ``python`` job
   whose function only appends ``run phase attempt`` to a ledger file (the cheapest handler a job can
   name); the ledger proves each run executed exactly once.

``--backfill-only`` skips the ticks (no 1,000 jobs). The in-process creation reports its CPU split
(this process / the PostgreSQL backends of the benchmark's database) and the wall time of each SQL
statement of the creation (``--repeat N``: N backfills one after the other, the figures of the one
that used the least CPU — on a shared machine the others waited for a core). ``--explain`` then
creates one more backfill of the same size with every write statement of its transaction also run
under ``EXPLAIN (ANALYZE, BUFFERS)`` in a savepoint that is rolled back (so the real statement still
does the work; that backfill's times are not figures) and prints the plans on stderr; ``--profile``
prints the top of a cProfile of one more creation.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _common import (
    PG_ADMIN_DSN,
    CpuMeter,
    Procs,
    Server,
    _postgres_cpu,
    backend,
    cli,
    code_info,
    log,
    machine,
    pct,
    prepare,
    spawn_worker,
    summary_ms,
)

FINISHED = ("succeeded", "failed", "cancelled")
LEDGER_FN = "lakehouse.handlers.samples:record_execution"


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (`serve` may run several)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _pg_cpu(db: str | None) -> float:
    return sum(cpu for mine, cpu in _postgres_cpu(db).values() if mine)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def ticks(b: Any, cfg: argparse.Namespace) -> dict[str, Any]:
    """1,000 jobs on a one-minute schedule, ``cfg.ticks`` passes at their tick instants."""
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import jobs, scheduler
    from lakehouse.services.context import open_context
    from lakehouse.settings import Settings

    ctx = open_context(Settings(home=b.home, database_url=b.database_url))
    clock = FakeClock(datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC))
    ctx.clock = clock
    try:
        t = time.perf_counter()
        for i in range(cfg.jobs):
            jobs.save(ctx, SYSTEM, "default", {
                "name": f"every_minute_{i:05d}", "type": "sql", "sql": {"query": "SELECT {{ logical_date }} AS at"},
                "schedule": {"cron": "* * * * *", "timezone": "UTC", "catchup": "none"}})
        saved_s = time.perf_counter() - t
        log(f"[ticks] {cfg.jobs} jobs saved in {saved_s:.1f} s")
        lags: list[float] = []
        passes: list[float] = []
        cpu_cp: list[float] = []
        cpu_pg: list[float] = []
        made: list[int] = []
        for k in range(1, cfg.ticks + 1):
            at = datetime(2030, 1, 1, 0, k, tzinfo=UTC)
            clock.now = at
            pg0, own0, t0 = _pg_cpu(b.pg_db), _own_cpu(), time.perf_counter()
            result = scheduler.tick(ctx, at)
            wall = time.perf_counter() - t0
            own1, pg1 = _own_cpu(), _pg_cpu(b.pg_db)
            passes.append(wall)
            cpu_cp.append(own1 - own0)
            cpu_pg.append(pg1 - pg0)
            made.append(result.scheduled)
            lags += [wall] * result.scheduled  # one batch of up to 1,000 runs: one commit at the pass's end
            log(f"[ticks] tick {k}: {result.scheduled} runs in {wall * 1000:.0f} ms "
                f"(cpu: control plane {cpu_cp[-1] * 1000:.0f} ms, postgres {cpu_pg[-1] * 1000:.0f} ms)")
    finally:
        ctx.db.dispose()
    return {
        "jobs": cfg.jobs, "ticks": cfg.ticks, "jobs_saved_s": round(saved_s, 2),
        "runs_per_tick": made, "all_ticks_complete": all(n == cfg.jobs for n in made),
        "tick_to_run_lag": summary_ms(lags),
        "pass_wall": summary_ms(passes),
        "cpu_per_tick_ms": {
            "control_plane": {"p50": round(pct(cpu_cp, 50) * 1000, 1), "max": round(max(cpu_cp) * 1000, 1),
                              "mean": round(sum(cpu_cp) / len(cpu_cp) * 1000, 1)},
            "postgres_bench_db": {"p50": round(pct(cpu_pg, 50) * 1000, 1), "max": round(max(cpu_pg) * 1000, 1),
                                  "mean": round(sum(cpu_pg) / len(cpu_pg) * 1000, 1)},
        },
    }


class StatementTimer:
    """Wall time of each SQL statement run on an engine (``statements``), and, with ``explain``, the
    ``EXPLAIN (ANALYZE, BUFFERS)`` of each write statement, run first in a savepoint that is rolled
    back (``plans``)."""

    def __init__(self, engine: Any, explain: bool = False) -> None:
        from sqlalchemy import event

        self.engine, self.explain = engine, explain
        self.statements: list[dict[str, Any]] = []
        self.plans: list[dict[str, Any]] = []
        self._t = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def close(self) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)

    @staticmethod
    def _head(statement: str) -> str:
        return " ".join(statement.split())[:90]

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        head = statement.lstrip().upper()
        if self.explain and not many and head.startswith(("INSERT", "UPDATE", "WITH", "DELETE")):
            cursor.execute("SAVEPOINT bench_explain")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(str(r[0]) for r in cursor.fetchall())
            cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")
            self.plans.append({"statement": self._head(statement), "plan": plan})
        self._t = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self.statements.append({"statement": self._head(statement),
                                "ms": round((time.perf_counter() - self._t) * 1000, 2)})


def backfill_in_process(b: Any, cfg: argparse.Namespace) -> dict[str, Any]:
    """The backfill through the service, in this process (the same job as the HTTP one below): its
    creation time, CPU split and statements; then the optional EXPLAIN and cProfile passes."""
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import backfills, jobs
    from lakehouse.services.context import open_context
    from lakehouse.settings import Settings

    ctx = open_context(Settings(home=b.home, database_url=b.database_url))
    first = date(2000, 1, 1)
    last = first + timedelta(days=cfg.backfill_runs - 1)
    name = "bench_ledger_inproc"

    def create() -> dict[str, Any]:
        return backfills.create(ctx, SYSTEM, "default", name, first, last,
                                max_concurrent=min(cfg.backfill_runs, 10_000))

    try:
        jobs.save(ctx, SYSTEM, "default", _ledger_job(b, name))
        with ctx.db.read() as conn:  # connect once before measuring
            conn.exec_driver_sql("SELECT 1")
        tries: list[dict[str, Any]] = []
        for _ in range(cfg.repeat):
            timer = StatementTimer(ctx.db.engine)
            pg0, own0, t = _pg_cpu(b.pg_db), _own_cpu(), time.perf_counter()
            bf = create()
            wall = time.perf_counter() - t
            cpu = {"control_plane_s": round(_own_cpu() - own0, 3),
                   "postgres_bench_db_s": round(_pg_cpu(b.pg_db) - pg0, 3)}
            timer.close()
            slow = sorted(timer.statements, key=lambda s: -s["ms"])[:5]
            log(f"[backfill] {bf['total']} runs created in process in {wall:.3f} s (cpu {cpu}, load "
                f"{os.getloadavg()[0]:.1f}); slowest statements: {slow}")
            tries.append({"create_s": round(wall, 3), "create_cpu": cpu, "statements": len(timer.statements),
                          "slowest_statements": slow})
        best = min(tries, key=lambda x: sum(x["create_cpu"].values()))
        out: dict[str, Any] = {"runs": bf["total"], **best, "tries": tries}
        if cfg.explain:
            timer = StatementTimer(ctx.db.engine, explain=True)
            create()
            timer.close()
            for p in timer.plans:
                log(f"[explain] {p['statement']}\n{p['plan']}")
            out["explain"] = timer.plans
        if cfg.profile:
            import cProfile
            import io
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            create()
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
            log(f"[profile]\n{buf.getvalue()}")
    finally:
        ctx.db.dispose()
    return out


def _ledger_job(b: Any, name: str) -> dict[str, Any]:
    return {"name": name, "type": "python", "max_attempts": 1,
            "python": {"callable": LEDGER_FN, "params": {"path": str(b.home / f"{name}.ledger")}}}


def backfill(b: Any, cfg: argparse.Namespace, tokens: dict[str, str]) -> dict[str, Any]:
    """A backfill through the API of a real server, drained by 2 real workers."""
    procs = Procs(b.home)
    b.env["LAKEHOUSE_SCHEDULER_INTERVAL_S"] = "1"
    try:
        server = Server(b, procs)
        api = httpx.Client(base_url=server.base, timeout=300,
                           headers={"Authorization": f"Bearer {tokens['engineer']}"})
        r = api.post("/api/jobs", json={"workspace": "default", "definition": _ledger_job(b, "bench_ledger")})
        if r.status_code != 201:
            raise RuntimeError(f"job: {r.status_code} {r.text[:300]}")
        workers = [spawn_worker(server, tokens["executor"], f"w{i}", cfg.max_phases) for i in range(2)]
        time.sleep(2)  # let both register and wait in their long-poll
        first = date(2000, 1, 1)
        last = first + timedelta(days=cfg.backfill_runs - 1)
        groups = {"server": [server.pid, *_children(server.pid)], "workers": [w.pid for w in workers]}
        with CpuMeter(groups, b.pg_db) as meter:
            with CpuMeter({"server": [server.pid, *_children(server.pid)]}, b.pg_db) as create_meter:
                t = time.perf_counter()
                r = api.post("/api/jobs/bench_ledger/backfills?workspace=default",
                             json={"from": first.isoformat(), "to": last.isoformat(),
                                   "max_concurrent": min(cfg.backfill_runs, 10_000)})
                create_s = time.perf_counter() - t
            if r.status_code != 201:
                raise RuntimeError(f"backfill: {r.status_code} {r.text[:300]}")
            bf = r.json()
            log(f"[backfill] {bf['total']} runs created over HTTP in {create_s:.2f} s; draining with 2 workers")
            dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{b.pg_db}"
            deadline = time.monotonic() + cfg.drain_timeout_s
            with psycopg.connect(dsn, autocommit=True) as pg:
                while True:
                    row = pg.execute(
                        "SELECT count(*) FILTER (WHERE r.status IN ('succeeded', 'failed', 'cancelled')), "
                        "count(*) FILTER (WHERE r.status = 'succeeded'), max(r.finished_at), min(b.created_at) "
                        "FROM job_runs j JOIN runs r ON r.id = j.run_id JOIN backfills b ON b.id = j.backfill_id "
                        "WHERE j.backfill_id = %s", (bf["id"],)).fetchone()
                    assert row is not None
                    done, ok, last_finished, created_at = row
                    if done >= bf["total"]:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"drain: {done} of {bf['total']} runs finished in {cfg.drain_timeout_s} s")
                    time.sleep(0.5)
        drain_s = (last_finished - created_at).total_seconds()
        ledger = (b.home / "bench_ledger.ledger").read_text().splitlines()
        runs_seen = [line.split()[0] for line in ledger]
        log(f"[backfill] drained in {drain_s:.1f} s ({bf['total'] / drain_s:.0f} runs/s)")
        return {"runs": bf["total"], "create_http_s": round(create_s, 3), "create_cpu": create_meter.result(),
                "drain_s": round(drain_s, 2),
                "runs_per_s": round(bf["total"] / drain_s, 1), "succeeded": ok,
                "ledger_lines": len(ledger), "ledger_distinct_runs": len(set(runs_seen)),
                "exactly_once": len(ledger) == len(set(runs_seen)) == bf["total"],
                "workers": 2, "worker_max_phases": cfg.max_phases, "cpu_during_drain": meter.result(per=bf["total"])}
    finally:
        procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=None, help="jobs on a one-minute schedule (default 1000)")
    ap.add_argument("--ticks", type=int, default=None, help="scheduler passes, one per minute (default 10)")
    ap.add_argument("--backfill-runs", type=int, default=None, help="runs of the backfill (default 10000)")
    ap.add_argument("--max-phases", type=int, default=50, help="max_phases of each of the 2 workers")
    ap.add_argument("--drain-timeout-s", type=float, default=1800)
    ap.add_argument("--skip-server", action="store_true",
                    help="only the in-process figures (ticks, backfill creation): no server, no drain")
    ap.add_argument("--quick", action="store_true", help="smoke mode: 100 jobs, 3 ticks, 1,000 runs")
    ap.add_argument("--backfill-only", action="store_true",
                    help="skip the ticks: the backfill creation (and, unless --skip-server, the drain)")
    ap.add_argument("--explain", action="store_true",
                    help="EXPLAIN (ANALYZE, BUFFERS) of each write statement of a second in-process backfill")
    ap.add_argument("--profile", action="store_true", help="cProfile of a third in-process backfill creation")
    ap.add_argument("--repeat", type=int, default=1,
                    help="create the in-process backfill this many times (figures: the try with the least CPU)")
    cfg = ap.parse_args(argv)
    cfg.jobs = cfg.jobs or (100 if cfg.quick else 1000)
    cfg.ticks = cfg.ticks or (3 if cfg.quick else 10)
    cfg.backfill_runs = cfg.backfill_runs or (1000 if cfg.quick else 10_000)
    doc: dict[str, Any] = {
        "benchmark": "bench/scheduler.py",
        "command": " ".join(["python", "bench/scheduler.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "code": code_info(None),
        "config": {"jobs": cfg.jobs, "ticks": cfg.ticks, "backfill_runs": cfg.backfill_runs,
                   "worker_max_phases": cfg.max_phases, "skip_server": cfg.skip_server,
                   "backfill_only": cfg.backfill_only},
        "results": {}, "errors": {},
    }
    doc["machine"]["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with backend("postgres") as b:
        try:
            cli(b, "db", "upgrade")
            if not cfg.backfill_only:
                doc["results"]["ticks"] = ticks(b, cfg)
            doc["results"]["backfill_in_process"] = backfill_in_process(b, cfg)
            if not cfg.skip_server:
                tokens = prepare(b)
                doc["results"]["backfill"] = backfill(b, cfg, tokens)
        except Exception as exc:
            log(f"FAILED: {type(exc).__name__}: {exc}")
            doc["errors"]["postgres"] = f"{type(exc).__name__}: {exc}"
    doc["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(doc, indent=2, default=str))
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
