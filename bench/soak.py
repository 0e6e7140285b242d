"""Soak: N lightweight phases through a real `lakehouse serve` + `lakehouse worker`s on PostgreSQL.

Proves, at volume, what the fault tests prove in the small:
- every phase executed exactly once: each phase appends ``run phase attempt`` to a ledger file
  (``lakehouse.handlers.samples:record_execution``, O_APPEND), and the ledger must hold each
  (run, phase) once and nothing else;
- every run has a complete event trail: RUN_CREATED, a PHASE_STARTED and a PHASE_SUCCEEDED per
  phase, RUN_SUCCEEDED, and per-run sequence numbers 1..n without a gap;
- memory is flat: the RSS of the server (all its processes) and of each worker at the end is within
  ``--rss-tolerance`` (10 %) of their RSS after the warm-up (the first ``--warmup`` of the phases).

Usage: ``make soak`` (1,000,000 phases) or ``python bench/soak.py --phases 20000``. Bounded by
``--max-seconds``: past it the soak stops feeding work and fails. Prints one JSON document; exits
non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PG_ADMIN_DSN,
    Api,
    Procs,
    Server,
    backend,
    code_info,
    log,
    machine,
    prepare,
    run_body,
    spawn_worker,
)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *children(k)]
    return out


def tree_rss_kib(pid: int) -> int:
    return sum(rss_kib(p) for p in [pid, *children(pid)])


class Progress:
    """Finished runs and phases, read from the database (the HTTP API is what is being measured)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)

        self.autovacuum = self.conn.execute("SHOW autovacuum").fetchone()[0] == "on"
        self.vacuums = 0
        self.vacuum_s = 0.0

    def finished(self) -> tuple[int, int]:
        """(runs succeeded, runs failed or cancelled)."""
        runs = dict(self.conn.execute(
            "SELECT status, count(*) FROM runs WHERE status IN ('succeeded','failed','cancelled') GROUP BY status"
        ).fetchall())
        return runs.get("succeeded", 0), runs.get("failed", 0) + runs.get("cancelled", 0)

    def phases_done(self) -> int:
        """Phases succeeded (a count over the whole table: read every few seconds, not every poll)."""
        return int(self.conn.execute("SELECT count(*) FROM phases WHERE status = 'succeeded'").fetchone()[0])

    def vacuum(self) -> None:
        """What autovacuum does for the queue's tables, when the server's PostgreSQL runs without it (this
        machine's does: ``autovacuum = off``): every claim and completion leaves a dead row version in
        ``phases`` and ``runs`` and in their status indexes, and without vacuum the claim walks more of
        them each time (measured: 276 → 140 phases/s over the first 100,000 phases)."""
        t = time.monotonic()
        self.conn.execute("VACUUM (ANALYZE) phases, runs, phase_attempts, executors")
        self.vacuums += 1
        self.vacuum_s += time.monotonic() - t

    def bad_trails(self, per_run: int) -> tuple[int, int]:
        """(runs, runs whose event trail is incomplete or has a gap)."""
        total, bad = self.conn.execute("""
            SELECT count(*), count(*) FILTER (WHERE NOT (mn = 1 AND mx = n AND created = 1 AND ok = 1
                                                          AND started = %(k)s AND succeeded = %(k)s))
            FROM (SELECT run_id, count(*) AS n, min(seq) AS mn, max(seq) AS mx,
                         count(*) FILTER (WHERE type = 'RUN_CREATED') AS created,
                         count(*) FILTER (WHERE type = 'RUN_SUCCEEDED') AS ok,
                         count(*) FILTER (WHERE type = 'PHASE_STARTED') AS started,
                         count(*) FILTER (WHERE type = 'PHASE_SUCCEEDED') AS succeeded
                  FROM run_events GROUP BY run_id) AS t""", {"k": per_run}).fetchone()
        return int(total), int(bad)


def check_ledger(path: Path, run_ids: set[str], per_run: int) -> dict[str, Any]:
    seen: collections.Counter[str] = collections.Counter()
    foreign = 0
    with path.open() as fh:
        for line in fh:
            run_id, phase, _attempt = line.split()
            if run_id not in run_ids:
                foreign += 1
            seen[f"{run_id} {phase}"] += 1
    twice = sum(1 for v in seen.values() if v > 1)
    expected = len(run_ids) * per_run
    return {"lines": sum(seen.values()), "distinct_phases": len(seen), "expected_phases": expected,
            "executed_twice": twice, "missing": expected - len(seen), "foreign": foreign,
            "ok": twice == 0 and foreign == 0 and len(seen) == expected}


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # stop the server and workers and drop the database


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", type=int, default=int(os.environ.get("SOAK_PHASES", "1000000")))
    ap.add_argument("--phases-per-run", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-phases", type=int, default=50, help="phases per claim of each worker")
    ap.add_argument("--processes", type=int, default=0, help="server processes (0: one per core)")
    ap.add_argument("--in-flight", type=int, default=1000, help="runs queued or running at most")
    ap.add_argument("--vacuum-every-s", type=float, default=30.0,
                    help="when the server's PostgreSQL runs without autovacuum: VACUUM the queue tables this often")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the phases before the RSS baseline")
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--max-seconds", type=float, default=float(os.environ.get("SOAK_MAX_SECONDS", 6 * 3600)))
    args = ap.parse_args()
    per_run = args.phases_per_run
    n_runs = max(1, args.phases // per_run)
    total = n_runs * per_run
    result: dict[str, Any] = {"benchmark": "soak", "machine": machine(), "code": code_info(None),
                              "phases": total, "runs": n_runs, "phases_per_run": per_run,
                              "workers": args.workers, "max_phases_per_claim": args.max_phases}
    ok = True
    with backend("postgres") as b:
        b.env["LAKEHOUSE_LOG_LEVEL"] = "WARNING"  # a million phases must not write a million log lines
        b.env["LAKEHOUSE_PROCESSES"] = str(args.processes)
        tokens = prepare(b)
        ledger = b.home / "ledger.txt"
        procs = Procs(b.home)
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{b.pg_db}"
        try:
            server = Server(b, procs)
            api = Api(server.base, tokens["engineer"])
            workers = [spawn_worker(server, tokens["executor"], f"soak-{i}", args.max_phases)
                       for i in range(args.workers)]
            progress = Progress(dsn)
            body = run_body("soak", [{"name": f"p{i}", "type": "python", "params": {
                "callable": "lakehouse.handlers.samples:record_execution", "args": {"path": str(ledger)}}}
                for i in range(per_run)])
            run_ids: set[str] = set()
            created = 0
            state = {"finished_runs": 0}
            stop_feeding = threading.Event()

            def feed() -> None:
                nonlocal created
                while created < n_runs and not stop_feeding.is_set():
                    if created - state["finished_runs"] >= args.in_flight:
                        time.sleep(0.05)
                        continue
                    run_ids.add(api.create_run(body)["run_id"])
                    created += 1

            feeder = threading.Thread(target=feed, name="feeder", daemon=True)
            started = time.monotonic()
            feeder.start()
            warm: dict[str, int] | None = None
            warm_at = max(1000, int(total * args.warmup))
            last_log = started
            done_phases = 0
            timed_out = False
            last_vacuum = started
            while True:
                succeeded, failed = progress.finished()
                state["finished_runs"] = succeeded + failed
                now = time.monotonic()
                if not progress.autovacuum and now - last_vacuum >= args.vacuum_every_s:
                    progress.vacuum()
                    last_vacuum = now = time.monotonic()
                if warm is None or now - last_log > 10 or succeeded + failed >= n_runs:
                    done_phases = progress.phases_done()
                if warm is None and done_phases >= warm_at:
                    warm = {"server": tree_rss_kib(server.pid), **{f"worker-{i}": rss_kib(w.pid)
                                                                  for i, w in enumerate(workers)}}
                    result["warmup"] = {"phases": done_phases, "seconds": round(now - started, 1), "rss_kib": warm}
                    log(f"warm-up done at {done_phases} phases: RSS {warm}")
                if now - last_log > 10:
                    rate = done_phases / (now - started)
                    log(f"{done_phases}/{total} phases ({rate:.0f}/s), {succeeded} runs succeeded, {failed} failed")
                    last_log = now
                if succeeded + failed >= n_runs:
                    break
                if now - started > args.max_seconds:
                    timed_out = True
                    stop_feeding.set()
                    break
                if any(w.poll() is not None for w in workers) or server.proc.poll() is not None:
                    raise RuntimeError("a server or worker process exited during the soak")
                time.sleep(1.0)
            elapsed = time.monotonic() - started
            end = {"server": tree_rss_kib(server.pid), **{f"worker-{i}": rss_kib(w.pid)
                                                          for i, w in enumerate(workers)}}
            done_phases = progress.phases_done()
            result["seconds"] = round(elapsed, 1)
            result["autovacuum"] = progress.autovacuum
            if not progress.autovacuum:
                result["vacuum"] = {"every_s": args.vacuum_every_s, "runs": progress.vacuums,
                                    "seconds": round(progress.vacuum_s, 1)}
            result["phases_per_s"] = round(done_phases / elapsed, 1)
            result["runs_failed"] = failed
            result["timed_out"] = timed_out
            result["end_rss_kib"] = end
            if warm:
                growth = {k: round(end[k] / warm[k] - 1, 4) if warm[k] else None for k in end}
                result["rss_growth"] = growth
                result["rss_flat"] = all(g is not None and g <= args.rss_tolerance for g in growth.values())
            else:
                result["rss_flat"] = False
            runs_checked, bad = progress.bad_trails(per_run)
            result["event_trails"] = {"runs": runs_checked, "incomplete": bad,
                                      "ok": bad == 0 and runs_checked == n_runs}
            result["ledger"] = check_ledger(ledger, run_ids, per_run) if ledger.exists() else {"ok": False}
            ok = (not timed_out and failed == 0 and result["rss_flat"] and result["event_trails"]["ok"]
                  and result["ledger"]["ok"])
            for w in workers:
                procs.stop(w)
            api.close()
            progress.conn.close()
        finally:
            procs.stop_all()
    result["ok"] = ok
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
