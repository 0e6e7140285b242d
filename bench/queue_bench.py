"""Queue benchmark: the executor contract end to end, through the real HTTP API, with real
`lakehouse serve` and `lakehouse worker` processes, on PostgreSQL and on SQLite.

    .venv/bin/python bench/queue.py [--backend postgres|sqlite|both] [--quick] [--profile DIR] [--peers]

Prints one JSON document on stdout and a human-readable summary on stderr. Figures:

1. enqueue→start latency of single one-phase ``noop`` runs with one idle (long-polling) worker, each
   run submitted after the previous one finished. Primary figure: PHASE_STARTED.ts - RUN_CREATED.ts
   (both written by the server in the transactions that made those transitions). Also reported:
   client submit (before the POST) → PHASE_STARTED.ts, and RUN_CREATED → RUN_SUCCEEDED.
2. phases/s of one-phase ``noop`` runs with 2 workers, unbatched (max_phases 1) and batched
   (max_phases 50). The runs are created while both (already registered, idle) workers are
   SIGSTOPped; the window runs from SIGCONT to the last run's ``finished_at`` (read from the database,
   not through the API, so that counting costs the server nothing). Creating the runs is timed too.
3. wall time of one run of 40 sequential ``sleep`` 0.01 s phases, RUN_CREATED → RUN_SUCCEEDED, with
   1 and with 2 idle workers.

Each scenario gets a fresh server process (a long-poll of a stopped worker would otherwise outlive it
on the server) and fresh workers; every process is stopped in ``finally``. PostgreSQL: a database
``lakehouse_bench_<pid>`` on 127.0.0.1:5432 (user postgres), dropped at the end. SQLite: a temp
LAKEHOUSE_HOME. ``--profile DIR`` also records py-spy profiles (collapsed stacks of the threads that
hold the GIL, i.e. where Python CPU goes) of the server and the workers of every scenario into DIR;
profiled figures are slower and only for diagnosis. ``--peers`` also runs pgqueuer and procrastinate
(when importable; nothing is installed) on the same PostgreSQL and puts our throughput as ratios to
theirs under ``peers`` (see bench/_peers.py); ``--peers-only`` runs only them.
"""

from __future__ import annotations

import os
import sys

# find _common next to this file, whatever the working folder
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import contextlib
import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    Api,
    Backend,
    CpuMeter,
    Procs,
    Server,
    backend,
    code_info,
    log,
    machine,
    pct,
    prepare,
    run_body,
    spawn_worker,
    summary_ms,
    ts,
    wait_executors_idle,
)

TARGETS = {  # PostgreSQL, this 2-core machine: issue 13's table
    "enqueue_to_start_p50_ms": 5.0,
    "enqueue_to_start_p99_ms": 20.0,
    "unbatched_phases_per_s": 300.0,
    "batched_phases_per_s": 1500.0,
    "chain_40x10ms_s": 0.6,
}
FINISHED = {"RUN_SUCCEEDED", "RUN_FAILED", "RUN_CANCELLED"}


class Profiler:
    """py-spy record on the given pids for the duration of a ``with`` block (collapsed stacks)."""

    def __init__(self, outdir: Path | None) -> None:
        self.outdir = outdir
        self.pyspy = str(Path(sys.executable).parent / "py-spy")

    @contextlib.contextmanager
    def record(self, name: str, pids: dict[str, int]) -> Iterator[None]:
        if self.outdir is None:
            yield
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        procs = []
        for label, pid in pids.items():
            out = self.outdir / f"{name}-{label}.txt"
            procs.append(subprocess.Popen(
                [self.pyspy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--threads",
                 "--subprocesses", "--gil", "--nonblocking", "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)  # let py-spy attach
        try:
            yield
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


class Stack:
    """A fresh `lakehouse serve` and N workers for one scenario."""

    def __init__(self, b: Backend, tokens: dict[str, str], workers: int, max_phases: int, tag: str,
                 probe: DbProbe) -> None:
        self.b = b
        self.probe = probe
        self.procs = Procs(b.home)
        self.tokens = tokens
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.tag = tag
        self.server: Server | None = None
        self.api: Api | None = None
        self.n_workers = workers
        self.max_phases = max_phases

    def __enter__(self) -> Stack:
        try:
            self.server = Server(self.b, self.procs)
            self.api = Api(self.server.base, self.tokens["engineer"])
            for i in range(self.n_workers):
                label = f"{self.tag}-w{i + 1}"
                self.workers[label] = spawn_worker(self.server, self.tokens["executor"], label, self.max_phases)
            wait_executors_idle(self.api, list(self.workers))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.api is not None:
            self.api.close()
        self.procs.stop_all()

    def pids(self) -> dict[str, int]:
        assert self.server is not None
        return {"server": self.server.pid, **{k: p.pid for k, p in self.workers.items()}}

    def cpu_groups(self) -> dict[str, list[int]]:
        assert self.server is not None
        # `serve` may run several processes: count the children of the one it started too
        return {"server": [self.server.pid, *_children(self.server.pid)],
                "workers": [p.pid for p in self.workers.values()]}

    def cpu(self) -> CpuMeter:
        return CpuMeter(self.cpu_groups(), self.b.pg_db)

    def signal_workers(self, sig: int) -> None:
        for p in self.workers.values():
            if p.poll() is None:
                p.send_signal(sig)

    def check_alive(self) -> None:
        assert self.server is not None
        for label, p in [("server", self.server.proc), *self.workers.items()]:
            if p.poll() is not None:
                raise RuntimeError(f"{label} exited ({p.returncode}):\n{self.procs.tail(label)}")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for kid in map(int, kids):
        out += [kid, *_children(kid)]
    return out


def wait_run(stack: Stack, run_id: str, timeout: float, first_sleep: float = 0.0, every: float = 0.005
             ) -> list[dict[str, Any]]:
    """Wait until the run has finished, polling its status in the database (so that waiting costs the
    API process nothing), then read its events once through the API."""
    assert stack.api is not None and stack.probe is not None
    if first_sleep:
        time.sleep(first_sleep)
    deadline = time.monotonic() + timeout
    while stack.probe.status(run_id) not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish in {timeout} s")
        time.sleep(every)
    events = stack.api.events(run_id)
    if not any(e["type"] in FINISHED for e in events):
        raise RuntimeError(f"run {run_id} finished without its final event: {[e['type'] for e in events]}")
    return events


def first(events: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    for e in events:
        if e["type"] == type_:
            return e
    raise RuntimeError(f"no {type_} event in {[e['type'] for e in events]}")


# --- 1. enqueue → start -------------------------------------------------------------------------

def bench_latency(stack: Stack, n: int, warmup: int, gap_s: float) -> dict[str, Any]:
    api = stack.api
    assert api is not None
    body = run_body("bench-latency", [{"name": "p0", "type": "noop"}])
    server_lat, client_lat, run_total, claim_to_done = [], [], [], []
    cpu = stack.cpu()
    counters: PgCounters | None = None
    for i in range(warmup + n):
        if i == warmup:
            counters = PgCounters(stack.probe)
            cpu.__enter__()
        t0 = time.time()
        run = api.create_run(body)
        events = wait_run(stack, run["run_id"], timeout=30, first_sleep=0.005, every=0.003)
        created = ts(first(events, "RUN_CREATED")["ts"])
        started = ts(first(events, "PHASE_STARTED")["ts"])
        done = ts(first(events, "RUN_SUCCEEDED")["ts"])
        if i >= warmup:
            server_lat.append(started - created)
            client_lat.append(started - t0)
            run_total.append(done - created)
            claim_to_done.append(done - started)
        time.sleep(gap_s)  # the worker is back in its long-poll: "idle"
    cpu.__exit__()
    stack.check_alive()
    return {
        "what": "one-phase noop runs submitted one after another, 1 idle worker long-polling",
        "runs": n, "warmup_runs": warmup, "gap_between_runs_s": gap_s,
        "run_created_to_phase_started": summary_ms(server_lat),
        "client_submit_to_phase_started": summary_ms(client_lat),
        "phase_started_to_run_succeeded": summary_ms(claim_to_done),
        "run_created_to_run_succeeded": summary_ms(run_total),
        "measured_as": "server event timestamps PHASE_STARTED.ts - RUN_CREATED.ts from GET /ops/runs/{id}/events; "
                       "client_submit = wall clock just before POST /ops/runs (same host clock)",
        "cpu": cpu.result(per=n),
        "postgres_per_run": counters.per_phase(n) if counters else None,
    }


# --- 2. throughput ------------------------------------------------------------------------------

class DbProbe:
    """Counts and timestamps straight from the metadata database (no load on the API process)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url, pool_size=1, max_overflow=1)

    def status(self, run_id: str) -> str | None:
        from sqlalchemy import select

        from lakehouse.store.tables import runs

        with self.engine.connect() as c:
            return c.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()

    def finished(self, slug: str) -> tuple[int, int]:
        from sqlalchemy import func, select

        from lakehouse.store.tables import runs

        with self.engine.connect() as c:
            found: list[Any] = list(c.execute(
                select(runs.c.status, func.count()).where(runs.c.spec_slug == slug).group_by(runs.c.status)))
        rows = {str(st): int(n) for st, n in found}
        return int(rows.get("succeeded", 0)), int(rows.get("failed", 0) + rows.get("cancelled", 0))

    def times(self, slug: str) -> dict[str, Any]:
        from sqlalchemy import select

        from lakehouse.store.tables import phases, runs

        with self.engine.connect() as c:
            fin: list[Any] = [r[0] for r in c.execute(select(runs.c.finished_at).where(runs.c.spec_slug == slug))]
            claims: list[Any] = list(c.execute(
                select(phases.c.claimed_at, phases.c.executor_id).join(runs, runs.c.id == phases.c.run_id)
                .where(runs.c.spec_slug == slug)))
        return {"finished": sorted(x.timestamp() for x in fin if x is not None),
                "claims": [(x.timestamp(), ex) for x, ex in claims if x is not None]}

    def pg_counters(self) -> dict[str, int] | None:
        """Rows inserted and updated per table of the benchmark's database (PostgreSQL only). Backends
        flush these statistics about once a second while busy (later when idle), so the counts of a
        window are approximate at its edges."""
        if self.engine.dialect.name != "postgresql":
            return None
        from sqlalchemy import text

        with self.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            out: dict[str, int] = {}
            rel: Any
            ins: Any
            upd: Any
            for rel, ins, upd in c.execute(text(
                    "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname IN "
                    "('runs', 'phases', 'phase_attempts', 'run_events', 'executors', 'audit_log')")):
                out[f"{rel}_inserted"] = int(ins)
                out[f"{rel}_updated"] = int(upd)
        return out

    def close(self) -> None:
        self.engine.dispose()


class PgCounters:
    """Deltas of :meth:`DbProbe.pg_counters` over a window, per phase."""

    def __init__(self, probe: DbProbe) -> None:
        self.probe = probe
        if probe.engine.dialect.name == "postgresql":
            time.sleep(1.0)
        self.start = probe.pg_counters()

    def per_phase(self, phases: int) -> dict[str, float] | None:
        if self.start is None:
            return None
        time.sleep(1.0)
        end = self.probe.pg_counters()
        assert end is not None
        return {k: round((end[k] - self.start.get(k, 0)) / phases, 2) for k in end if end[k] != self.start.get(k, 0)}


def create_many(stack: Stack, slug: str, n: int, threads: int) -> float:
    """Create n one-phase noop runs with `threads` parallel clients; returns the seconds it took."""
    assert stack.server is not None
    local = threading.local()
    clients: list[Api] = []
    lock = threading.Lock()
    body = run_body(slug, [{"name": "p0", "type": "noop"}])

    def one(_: int) -> None:
        api = getattr(local, "api", None)
        if api is None:
            api = local.api = Api(stack.server.base, stack.tokens["engineer"])  # type: ignore[union-attr]
            with lock:
                clients.append(api)
        api.create_run(body)

    t = time.monotonic()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(n)))
    finally:
        for c in clients:
            c.close()
    return time.monotonic() - t


def bench_throughput(stack: Stack, n: int, threads: int, label: str, prof: Profiler,
                     prof_name: str) -> dict[str, Any]:
    api, probe = stack.api, stack.probe
    assert api is not None
    # warm up both workers (handler import, connections) and confirm the path works
    warm_slug = f"bench-warm-{label}"
    create_many(stack, warm_slug, 20, 4)
    deadline = time.monotonic() + 180
    while probe.finished(warm_slug)[0] + probe.finished(warm_slug)[1] < 20:
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up runs did not finish")
        time.sleep(0.05)
    time.sleep(0.2)  # both back in their long-polls

    slug = f"bench-tput-{label}"
    stack.signal_workers(signal.SIGSTOP)
    try:
        create_s = create_many(stack, slug, n, threads)
        counters = PgCounters(probe)
        cpu = stack.cpu()
        with prof.record(prof_name, stack.pids()), cpu:
            t_resume = time.time()
            stack.signal_workers(signal.SIGCONT)
            deadline = time.monotonic() + max(120.0, n / 20)
            while True:
                ok, bad = probe.finished(slug)
                if ok + bad >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: only {ok + bad} of {n} runs finished in time")
                stack.check_alive()
                time.sleep(0.1)
    finally:
        stack.signal_workers(signal.SIGCONT)
    t = probe.times(slug)
    fin = t["finished"]
    end = fin[-1]
    window = end - t_resume
    after = [c for c in t["claims"] if c[0] >= t_resume]
    first_claim = min(c[0] for c in after) if after else t_resume
    lo, hi = fin[int(0.1 * (len(fin) - 1))], fin[int(0.9 * (len(fin) - 1))]
    steady = (int(0.9 * (len(fin) - 1)) - int(0.1 * (len(fin) - 1))) / (hi - lo) if hi > lo else float("nan")
    per_worker: dict[str, int] = {}
    for _, ex in t["claims"]:
        per_worker[ex] = per_worker.get(ex, 0) + 1
    stack.check_alive()
    return {
        "what": f"{n} one-phase noop runs, {len(stack.workers)} workers, max_phases {stack.max_phases}",
        "runs": n, "workers": len(stack.workers), "max_phases": stack.max_phases,
        "failed_runs": bad,
        "phases_per_s": round(n / window, 1),
        "window_s": round(window, 3),
        "window": "SIGCONT of the workers (all runs already queued) -> last runs.finished_at",
        "first_claim_after_resume_ms": round((first_claim - t_resume) * 1000, 1),
        "phases_per_s_middle_80pct": round(steady, 1),
        "phases_per_worker": per_worker,
        "create_runs_s": round(create_s, 3),
        "create_runs_per_s": round(n / create_s, 1),
        "create_threads": threads,
        "cpu_during_window": cpu.result(per=n),
        "postgres_per_phase": counters.per_phase(n),
    }


# --- 3. chain -----------------------------------------------------------------------------------

def bench_chain(stack: Stack, repeats: int, phases: int = 40, sleep_s: float = 0.01) -> dict[str, Any]:
    api = stack.api
    assert api is not None
    body = run_body("bench-chain", [{"name": f"p{i:02d}", "type": "sleep", "params": {"seconds": sleep_s}}
                                    for i in range(phases)])
    warm = run_body("bench-chain-warm", [{"name": f"p{i}", "type": "sleep", "params": {"seconds": 0.001}}
                                         for i in range(4)])
    wait_run(stack, api.create_run(warm)["run_id"], timeout=60, every=0.02)
    time.sleep(0.2)
    walls: list[float] = []
    clients: list[float] = []
    cycles: list[float] = []
    handoffs: list[float] = []
    executors: list[list[Any]] = []
    counters = PgCounters(stack.probe)
    cpu = stack.cpu()
    cpu.__enter__()
    for _ in range(repeats):
        t0 = time.time()
        run = api.create_run(body)
        events = wait_run(stack, run["run_id"], timeout=120, first_sleep=phases * sleep_s, every=0.02)
        t_seen = time.time()
        created = ts(first(events, "RUN_CREATED")["ts"])
        done = ts(first(events, "RUN_SUCCEEDED")["ts"])
        walls.append(done - created)
        clients.append(t_seen - t0)
        started = {e["phase"]: ts(e["ts"]) for e in events if e["type"] == "PHASE_STARTED"}
        succeeded = {e["phase"]: ts(e["ts"]) for e in events if e["type"] == "PHASE_SUCCEEDED"}
        names = [p["name"] for p in body["phases"]]
        cycles.extend(succeeded[nm] - started[nm] for nm in names)
        handoffs.extend(started[b] - succeeded[a] for a, b in itertools.pairwise(names))
        executors.append(sorted({e["payload"].get("executor_id") for e in events if e["type"] == "PHASE_CLAIMED"}))
        time.sleep(0.2)
    cpu.__exit__()
    stack.check_alive()
    return {
        "cpu": cpu.result(per=repeats * phases),
        "postgres_per_phase": counters.per_phase(repeats * phases),
        "what": f"one run of {phases} sequential sleep {sleep_s} s phases, {len(stack.workers)} idle workers",
        "repeats": repeats, "workers": len(stack.workers),
        "wall_s_median": round(pct(walls, 50), 3), "wall_s_min": round(min(walls), 3),
        "wall_s_max": round(max(walls), 3), "wall_s_all": [round(w, 3) for w in walls],
        "measured_as": "RUN_SUCCEEDED.ts - RUN_CREATED.ts (server clock)",
        "client_submit_to_seen_done_s_median": round(pct(clients, 50), 3),
        "phase_started_to_succeeded": summary_ms(cycles),
        "phase_succeeded_to_next_started": summary_ms(handoffs),
        "ideal_s": round(phases * sleep_s, 3),
        "overhead_per_phase_ms": round((pct(walls, 50) - phases * sleep_s) / phases * 1000, 2),
        "executors_per_run": executors,
    }


# --- driver -------------------------------------------------------------------------------------

def run_backend(name: str, cfg: argparse.Namespace, prof: Profiler) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with backend(name, cfg.src) as b:
        t_backend = time.monotonic()
        out["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
        tokens = prepare(b)
        probe = DbProbe(b.database_url)
        try:
            log(f"[{name}] 1. enqueue->start latency, {cfg.latency_runs} runs, 1 idle worker")
            with Stack(b, tokens, workers=1, max_phases=1, tag="lat", probe=probe) as st, \
                    prof.record(f"{name}-latency", st.pids()):
                out["enqueue_to_start"] = bench_latency(st, cfg.latency_runs, cfg.warmup, cfg.gap_s)
            lat = out["enqueue_to_start"]["run_created_to_phase_started"]
            log(f"[{name}]    p50 {lat['p50_ms']} ms  p99 {lat['p99_ms']} ms")

            for workers in (1, 2):
                key = f"chain_40x10ms_{workers}w"
                log(f"[{name}] 3. 40 x sleep 0.01 s chain, {workers} idle worker(s), {cfg.chain_repeats} runs")
                with Stack(b, tokens, workers=workers, max_phases=1, tag=f"chain{workers}", probe=probe) as st, \
                        prof.record(f"{name}-chain{workers}w", st.pids()):
                    out[key] = bench_chain(st, cfg.chain_repeats)
                log(f"[{name}]    median {out[key]['wall_s_median']} s "
                    f"(+{out[key]['overhead_per_phase_ms']} ms/phase over the sleeps)")

            for label, mp in (("unbatched", 1), ("batched", cfg.batch)):
                key = f"throughput_{label}"
                log(f"[{name}] 2. throughput {label} (2 workers, max_phases {mp}), {cfg.tput_runs} runs")
                with Stack(b, tokens, workers=2, max_phases=mp, tag=label, probe=probe) as st:
                    out[key] = bench_throughput(st, cfg.tput_runs, cfg.create_threads, label, prof,
                                                f"{name}-{label}")
                log(f"[{name}]    {out[key]['phases_per_s']} phases/s "
                    f"(middle 80%: {out[key]['phases_per_s_middle_80pct']}); "
                    f"created {out[key]['create_runs_per_s']} runs/s")
        finally:
            probe.close()
        out["backend_seconds"] = round(time.monotonic() - t_backend, 1)
        out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def verdict(res: dict[str, Any]) -> dict[str, Any]:
    lat = res["enqueue_to_start"]["run_created_to_phase_started"]
    chain = min(res["chain_40x10ms_1w"]["wall_s_median"], res["chain_40x10ms_2w"]["wall_s_median"])
    checks = {
        "enqueue_to_start_p50_ms": (lat["p50_ms"], lat["p50_ms"] <= TARGETS["enqueue_to_start_p50_ms"]),
        "enqueue_to_start_p99_ms": (lat["p99_ms"], lat["p99_ms"] <= TARGETS["enqueue_to_start_p99_ms"]),
        "unbatched_phases_per_s": (res["throughput_unbatched"]["phases_per_s"],
                                   res["throughput_unbatched"]["phases_per_s"] >= TARGETS["unbatched_phases_per_s"]),
        "batched_phases_per_s": (res["throughput_batched"]["phases_per_s"],
                                 res["throughput_batched"]["phases_per_s"] >= TARGETS["batched_phases_per_s"]),
        "chain_40x10ms_s": (chain, chain <= TARGETS["chain_40x10ms_s"]),
    }
    return {k: {"value": v, "target": TARGETS[k], "met": ok} for k, (v, ok) in checks.items()}


def print_summary(doc: dict[str, Any]) -> None:
    rows = [
        ("enqueue->start p50 (ms)", lambda r: r["enqueue_to_start"]["run_created_to_phase_started"]["p50_ms"]),
        ("enqueue->start p99 (ms)", lambda r: r["enqueue_to_start"]["run_created_to_phase_started"]["p99_ms"]),
        ("submit->start p50 (ms, client)",
         lambda r: r["enqueue_to_start"]["client_submit_to_phase_started"]["p50_ms"]),
        ("phases/s unbatched (2w, mp 1)", lambda r: r["throughput_unbatched"]["phases_per_s"]),
        ("phases/s batched (2w, mp N)", lambda r: r["throughput_batched"]["phases_per_s"]),
        ("create runs/s (8 clients)", lambda r: r["throughput_unbatched"]["create_runs_per_s"]),
        ("40x10ms chain, 1 worker (s)", lambda r: r["chain_40x10ms_1w"]["wall_s_median"]),
        ("40x10ms chain, 2 workers (s)", lambda r: r["chain_40x10ms_2w"]["wall_s_median"]),
    ]
    names = list(doc["results"])
    log("")
    log(f"{'figure':34}" + "".join(f"{n:>12}" for n in names))
    for label, get in rows:
        cells = []
        for n in names:
            try:
                cells.append(f"{get(doc['results'][n]):>12}")
            except (KeyError, TypeError):
                cells.append(f"{'-':>12}")
        log(f"{label:34}" + "".join(cells))
    for n, v in doc.get("verdict", {}).items():
        missed = [k for k, c in v.items() if not c["met"]]
        log(f"{n}: targets " + ("all met" if not missed else "missed: " + ", ".join(
            f"{k} ({v[k]['value']} vs {v[k]['target']})" for k in missed)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["postgres", "sqlite", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="smoke mode: few runs, about 1 minute per backend")
    ap.add_argument("--latency-runs", type=int, default=None, help="runs for the latency figure (default 200)")
    ap.add_argument("--tput-runs", type=int, default=None, help="runs per throughput figure (default 800)")
    ap.add_argument("--chain-repeats", type=int, default=None, help="40-phase runs per worker count (default 3)")
    ap.add_argument("--batch", type=int, default=50, help="max_phases of the batched workers")
    ap.add_argument("--create-threads", type=int, default=8)
    ap.add_argument("--profile", type=Path, default=None, help="record py-spy profiles into this folder")
    ap.add_argument("--peers", action="store_true",
                    help="also run pgqueuer and procrastinate (if installed: the `bench` extra) on the same "
                         "PostgreSQL and report our figures as ratios to theirs")
    ap.add_argument("--peers-only", action="store_true", help="run only the peers (no ratios)")
    ap.add_argument("--src", type=Path, default=None,
                    help="run server/workers/CLI from this source tree (e.g. a `git archive` of a commit)")
    cfg = ap.parse_args(argv)
    if cfg.profile is not None and not (Path(sys.executable).parent / "py-spy").exists():
        ap.error("--profile needs py-spy in this venv: .venv/bin/pip install py-spy==0.4.1")
    cfg.latency_runs = cfg.latency_runs or (30 if cfg.quick else 200)
    cfg.tput_runs = cfg.tput_runs or (300 if cfg.quick else 800)
    cfg.chain_repeats = cfg.chain_repeats or (1 if cfg.quick else 3)
    cfg.warmup = 3 if cfg.quick else 10
    cfg.gap_s = 0.02

    backends = ["postgres", "sqlite"] if cfg.backend == "both" else [cfg.backend]
    if cfg.peers_only:
        backends = []
    doc: dict[str, Any] = {
        "benchmark": "bench/queue.py",
        "command": " ".join([Path(sys.executable).name, "bench/queue.py", *(argv or sys.argv[1:])]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if cfg.quick else "default",
        "profiled": cfg.profile is not None,
        "machine": machine(),
        "code": code_info(cfg.src),
        "config": {"latency_runs": cfg.latency_runs, "throughput_runs": cfg.tput_runs,
                   "chain_repeats": cfg.chain_repeats, "batch_max_phases": cfg.batch,
                   "create_threads": cfg.create_threads},
        "targets_postgres": TARGETS,
        "results": {},
        "verdict": {},
        "errors": {},
    }
    prof = Profiler(cfg.profile)
    t0 = time.monotonic()
    for name in backends:
        try:
            doc["results"][name] = run_backend(name, cfg, prof)
            doc["verdict"][name] = verdict(doc["results"][name])
        except Exception as exc:
            log(f"[{name}] FAILED: {type(exc).__name__}: {exc}")
            doc["errors"][name] = f"{type(exc).__name__}: {exc}"
    if cfg.peers or cfg.peers_only:
        from _peers import ratios, run_peers

        doc["peers"] = run_peers(cfg.tput_runs, cfg.batch)
        doc["peers"]["ratios"] = ratios(doc["results"].get("postgres"), doc["peers"])
        doc["peers"]["ratio"] = "our PostgreSQL phases/s (throughput_<mode>) / the peer's jobs/s, same invocation"
        for k, v in doc["peers"]["ratios"].items():
            log(f"peers: {k}: {v['ratio']}x" + (f" (target {v['target_ratio']}x)" if "target_ratio" in v else ""))
    doc["total_seconds"] = round(time.monotonic() - t0, 1)
    print_summary(doc)
    print(json.dumps(doc, indent=2, default=str))
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
