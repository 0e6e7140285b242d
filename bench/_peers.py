"""Peers in the same run: pgqueuer and procrastinate doing the lightweight-job workload of
bench/queue_bench.py's throughput figure on the same PostgreSQL, in the same invocation.

    .venv/bin/python bench/queue_bench.py --peers            # ours + peers, ratios in the JSON
    .venv/bin/python bench/queue_bench.py --peers-only       # only the peers (no ratios)

Nothing is installed at run time: a peer runs only when it is importable (``pip install -e '.[bench]'``
pins pgqueuer 1.6.0 and procrastinate 3.10.0); a missing one is reported as skipped.

The workload mirrors ours: 2 worker processes (``python bench/_peers.py worker …``) are started and
warmed up (20 jobs), then SIGSTOPped; N no-op jobs are enqueued (in one batched call: that is what
each library offers; our runs are created over HTTP, so creation rates are not compared); the window
runs from the first to the last job's completion timestamp written by PostgreSQL after SIGCONT
(pgqueuer: its ``pgqueuer_log`` 'successful' rows; procrastinate: its ``procrastinate_events``
'succeeded' rows). Ours runs from SIGCONT to the last ``runs.finished_at``, wake-up included: the
peers' window leaves their wake-up out (pgqueuer on psycopg took up to 2 s to notice jobs enqueued
while it was stopped), so the ratios are conservative for us. ``jobs_per_s_from_resume`` is the
figure measured exactly as ours. Each peer and mode gets its own fresh database
``lakehouse_bench_peer_<peer>_<mode>_<pid>``, dropped at the end.

Modes: *unbatched* is pgqueuer ``batch_size=1`` and procrastinate ``concurrency=1``; *batched* is
pgqueuer ``batch_size=B`` and procrastinate ``concurrency=B`` (procrastinate fetches one job per
query; concurrency is its nearest equivalent of a batch). pgqueuer's background log aggregation is
turned off so that its completion log stays readable (it folds rows away every 30 s otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import PG_ADMIN_DSN, CpuMeter, log

PEERS = ("pgqueuer", "procrastinate")
PINS = {"pgqueuer": "1.6.0", "procrastinate": "3.10.0"}
WARMUP_JOBS = 20


def available() -> dict[str, str | None]:
    """peer -> installed version, or None when it cannot be imported (nothing is installed here)."""
    out: dict[str, str | None] = {}
    for name in PEERS:
        if importlib.util.find_spec(name) is None:
            out[name] = None
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _dsn(db: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{db}"


@contextlib.contextmanager
def fresh_db(tag: str) -> Iterator[tuple[str, str]]:
    import psycopg

    db = f"lakehouse_bench_peer_{tag}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}"')
    try:
        yield db, _dsn(db)
    finally:
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        except Exception as exc:  # never hide the benchmark's own error behind this one
            log(f"[peers] could not drop database {db}: {exc}")


# --- what runs inside each peer (installer, enqueuer, worker, done-counter) ----------------------

async def _pgq_queries(dsn: str) -> Any:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    return conn, Queries(PsycopgDriver(conn))


async def _install(peer: str, dsn: str) -> None:
    if peer == "pgqueuer":
        conn, q = await _pgq_queries(dsn)
        try:
            await q.install()
        finally:
            await conn.close()
    else:
        app = _procrastinate_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()


async def _enqueue(peer: str, dsn: str, n: int) -> None:
    if peer == "pgqueuer":
        conn, q = await _pgq_queries(dsn)
        try:
            await q.enqueue(["noop"] * n, [None] * n, [0] * n)
        finally:
            await conn.close()
    else:
        app = _procrastinate_app(dsn)
        async with app.open_async():
            await app.tasks["noop"].batch_defer_async(*({} for _ in range(n)))


def _procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def _worker(peer: str, dsn: str, batch: int) -> None:
    if peer == "pgqueuer":
        from datetime import timedelta

        from pgqueuer import QueueManager

        conn, q = await _pgq_queries(dsn)
        qm = QueueManager(q)

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, qm.shutdown.set)
        await qm.run(batch_size=batch, log_aggregation_interval=timedelta(0))
        await conn.close()
    else:
        app = _procrastinate_app(dsn)
        async with app.open_async():
            await app.run_worker_async(concurrency=batch, wait=True, install_signal_handlers=True)


FIRST_SQL = {
    "pgqueuer": "SELECT extract(epoch FROM min(created)) FROM pgqueuer_log WHERE status = 'successful' "
                "AND created >= to_timestamp(%s)",
    "procrastinate": "SELECT extract(epoch FROM min(at)) FROM procrastinate_events WHERE type = 'succeeded' "
                     "AND at >= to_timestamp(%s)",
}
DONE_SQL = {
    "pgqueuer": "SELECT count(*), extract(epoch FROM max(created)) FROM pgqueuer_log WHERE status = 'successful'",
    "procrastinate": "SELECT count(*), extract(epoch FROM max(at)) FROM procrastinate_events WHERE type = 'succeeded'",
}


def _done(conn: Any, peer: str) -> tuple[int, float | None]:
    n, last = conn.execute(DONE_SQL[peer]).fetchone()
    return int(n), (float(last) if last is not None else None)


def _wait_done(conn: Any, peer: str, want: int, timeout: float, procs: list[subprocess.Popen[bytes]],
               every: float = 0.01) -> float:
    deadline = time.monotonic() + timeout
    while True:
        n, last = _done(conn, peer)
        if n >= want and last is not None:
            return last
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{peer} worker exited ({p.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer}: only {n} of {want} jobs done in {timeout} s")
        time.sleep(every)


def bench_peer(peer: str, mode: str, n: int, batch: int, workers: int = 2) -> dict[str, Any]:
    import psycopg

    size = 1 if mode == "unbatched" else batch
    knob = "batch_size" if peer == "pgqueuer" else "concurrency"
    with fresh_db(f"{peer}_{mode}") as (db, dsn), tempfile.TemporaryFile() as errlog:
        asyncio.run(_install(peer, dsn))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(workers):
                procs.append(subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "worker", peer, dsn, str(size)],
                    stdout=subprocess.DEVNULL, stderr=errlog))
            with psycopg.connect(dsn, autocommit=True) as conn:
                asyncio.run(_enqueue(peer, dsn, WARMUP_JOBS))  # the workers are up and warm
                _wait_done(conn, peer, WARMUP_JOBS, 120, procs)
                time.sleep(0.2)
                for p in procs:
                    p.send_signal(signal.SIGSTOP)
                try:
                    t = time.monotonic()
                    asyncio.run(_enqueue(peer, dsn, n))
                    enqueue_s = time.monotonic() - t
                    cpu = CpuMeter({"workers": [p.pid for p in procs]}, db)
                    with cpu:
                        t_resume = time.time()
                        for p in procs:
                            p.send_signal(signal.SIGCONT)
                        last = _wait_done(conn, peer, WARMUP_JOBS + n, max(120.0, n / 20), procs)
                    first_done = conn.execute(FIRST_SQL[peer], (t_resume,)).fetchone()[0]
                finally:
                    for p in procs:
                        with contextlib.suppress(ProcessLookupError):
                            p.send_signal(signal.SIGCONT)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            errlog.seek(0)
            tail = errlog.read().decode(errors="replace").strip().splitlines()[-15:]
            if tail and any(p.returncode not in (0, -signal.SIGTERM) for p in procs):
                log(f"[peers] {peer} worker stderr:\n" + "\n".join(tail))
    window = last - t_resume
    first = float(first_done) if first_done is not None else t_resume
    busy = last - first
    return {
        "what": f"{n} no-op jobs, {workers} worker processes, {knob} {size}",
        "jobs": n, "workers": workers, knob: size,
        "jobs_per_s": round(n / busy, 1) if busy > 0 else None,
        "window_s": round(busy, 3),
        "window": "first -> last completion timestamp in PostgreSQL after SIGCONT of the workers (all jobs "
                  "already enqueued); it leaves out the peer's wake-up, so it flatters the peer",
        "jobs_per_s_from_resume": round(n / window, 1) if window > 0 else None,
        "first_done_after_resume_ms": round((first - t_resume) * 1000, 1),
        "enqueue_s": round(enqueue_s, 3),
        "enqueue": "one batched enqueue call",
        "cpu_during_window": cpu.result(per=n),
    }


def run_peers(n: int, batch: int) -> dict[str, Any]:
    """Every available peer in both modes; errors are recorded, never raised."""
    found = available()
    out: dict[str, Any] = {"versions": found, "pins": PINS, "results": {}, "skipped": {}, "errors": {}}
    for peer, version in found.items():
        if version is None:
            out["skipped"][peer] = f"not installed (pip install -e '.[bench]' pins {peer}=={PINS[peer]})"
            log(f"[peers] {peer}: skipped, not installed")
            continue
        if version != PINS[peer]:
            log(f"[peers] {peer} {version} installed; figures were pinned against {PINS[peer]}")
        for mode in ("unbatched", "batched"):
            log(f"[peers] {peer} {version} {mode}: {n} no-op jobs, 2 workers")
            try:
                res = bench_peer(peer, mode, n, batch)
                out["results"].setdefault(peer, {})[mode] = res
                log(f"[peers]    {res['jobs_per_s']} jobs/s")
            except Exception as exc:
                log(f"[peers] {peer} {mode} FAILED: {type(exc).__name__}: {exc}")
                out["errors"][f"{peer}_{mode}"] = f"{type(exc).__name__}: {exc}"
    return out


# What the issue asks of us, as ratios of our phases/s to a peer's jobs/s in the same invocation.
RATIO_TARGETS = {("unbatched", "procrastinate"): 1.5, ("batched", "pgqueuer"): 1.0}


def ratios(ours: dict[str, Any] | None, peers: dict[str, Any]) -> dict[str, Any]:
    """Our PostgreSQL throughput figures divided by each peer's, mode by mode (> 1: we are faster)."""
    out: dict[str, Any] = {}
    if not ours:
        return out
    for peer, modes in peers.get("results", {}).items():
        for mode, res in modes.items():
            mine = (ours.get(f"throughput_{mode}") or {}).get("phases_per_s")
            theirs = res.get("jobs_per_s")
            if not mine or not theirs:
                continue
            key = f"{mode}_vs_{peer}_{mode}"
            out[key] = {"ours_phases_per_s": mine, "theirs_jobs_per_s": theirs, "ratio": round(mine / theirs, 3)}
            target = RATIO_TARGETS.get((mode, peer))
            if target is not None:
                out[key].update(target_ratio=target, met=mine / theirs >= target)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "worker":
        asyncio.run(_worker(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        sys.exit(f"usage: {Path(__file__).name} worker pgqueuer|procrastinate DSN BATCH (started by queue_bench.py)")
