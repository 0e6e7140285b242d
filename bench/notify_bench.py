"""Notifications benchmark on PostgreSQL: deliveries per second through the outbox to a local
receiver (docs/benchmarks.md, "Notifications"). A fresh database per run, dropped at the end.

    .venv/bin/python bench/notify_bench.py [--burst 1000] [--paced 200] [--rate 10]
                                           [--alert-interval-s 5] [--reaper-interval-s 1]

What runs: a real `lakehouse serve` subprocess, whose background loop (the reaper loop's
operations pass, services/alert_eval.run_pass -> services/notify.deliver_due, every
``LAKEHOUSE_ALERT_INTERVAL_S``) sends the outbox; a webhook connection (JSON body signed with
HMAC-SHA256 and a timestamp) to an HTTP server on 127.0.0.1 in this process, which checks every
signature and records when each notification arrived. Notifications are enqueued the way the
product does it: ``alert_fire.fire`` opens an alert (one per notification, distinct group keys so
nothing is grouped) and writes its outbox row in the same transaction, committed in this process.

1. **Burst**: ``--burst`` alerts committed as fast as possible (100 per transaction), then the loop
   drains them: *delivered/s* = notifications / (last arrival - first commit).
2. **Paced**: ``--paced`` alerts at ``--rate`` per second, one per transaction: *enqueue ->
   delivered* latency per notification (commit -> the receiver has the request), p50/p99. The loop's
   interval is part of it (a notification waits for the next pass).

CPU per notification (burst): the server process, the PostgreSQL backends serving the benchmark's
database, and this process (enqueue + receiver), from /proc. Prints one JSON document on stdout.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import hashlib
import hmac
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _common import CpuMeter, Procs, Server, backend, code_info, free_port, log, machine, pct

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import alert_fire, alerts, connections, workspaces
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store import alerts as alerts_store
from lakehouse.store.migrations import upgrade

SECRET = "whsec-bench-0123456789abcdef"


class Receiver:
    """An HTTP webhook receiver on 127.0.0.1: checks the HMAC signature, records arrival times by
    the bench sequence number carried in the alert's details."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[int, float] = {}
        self.duplicates = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                at = time.time()
                ts = self.headers.get("X-Lakehouse-Timestamp") or ""
                mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(self.headers.get("X-Lakehouse-Signature") or "", f"sha256={mac}")
                seq = int(json.loads(body).get("details", {}).get("seq", -1))
                with rec.lock:
                    if not ok:
                        rec.bad_signatures += 1
                    elif seq in rec.arrived:
                        rec.duplicates += 1
                    else:
                        rec.arrived[seq] = at
                self.send_response(204 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count(self, seqs: range) -> int:
        with self.lock:
            return sum(1 for s in seqs if s in self.arrived)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (`lakehouse serve` runs its server processes as children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def _wait(rec: Receiver, seqs: range, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while rec.count(seqs) < len(seqs):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {rec.count(seqs)} of {len(seqs)} notifications arrived in {timeout:.0f} s")
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burst", type=int, default=1000, help="notifications enqueued at once")
    ap.add_argument("--paced", type=int, default=200, help="notifications enqueued at --rate")
    ap.add_argument("--rate", type=float, default=10.0, help="paced notifications per second")
    ap.add_argument("--alert-interval-s", type=float, default=5.0,
                    help="LAKEHOUSE_ALERT_INTERVAL_S of the server (product default 5)")
    ap.add_argument("--reaper-interval-s", type=float, default=1.0,
                    help="LAKEHOUSE_REAPER_INTERVAL_S of the server (product default 1)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="give up waiting for deliveries after this")
    cfg = ap.parse_args()
    out: dict[str, Any] = {"backend": "postgres", "machine": machine(), "code": code_info(None),
                           "settings": {"alert_interval_s": cfg.alert_interval_s,
                                        "reaper_interval_s": cfg.reaper_interval_s,
                                        "deliveries_per_pass": 50}}
    rec = Receiver()
    with backend("postgres") as b, tempfile.TemporaryDirectory(prefix="lh-bench-notify-") as logs:
        procs = Procs(Path(logs))
        upgrade(b.database_url)
        ctx = open_context(Settings(home=b.home, database_url=b.database_url))
        try:
            workspaces.create(ctx, "bench")
            connections.create(ctx, SYSTEM, workspace="bench", environment="dev", name="hook", type_="webhook",
                               config={"url": rec.url, "format": "json"}, secrets={"signing_secret": SECRET})
            rule_id = alerts.create_rule(ctx, SYSTEM, "bench", {"name": "bench", "kind": "run_failed",
                                                                "severity": "critical"})["id"]
            alerts.add_route(ctx, SYSTEM, "bench", severity_="critical", channel="hook")
            with ctx.db.read() as conn:
                rule = alerts_store.get_rule(conn, None, rule_id)
            assert rule is not None
            committed: dict[int, float] = {}

            def enqueue(seqs: range) -> None:
                with ctx.db.write() as conn:
                    now = ctx.clock()
                    for s in seqs:
                        alert_fire.fire(conn, rule, f"bench/{s}", f"bench notification {s}", {"seq": s}, now)
                at = time.time()
                for s in seqs:
                    committed[s] = at

            b.env.update({"LAKEHOUSE_ALERT_INTERVAL_S": str(cfg.alert_interval_s),
                          "LAKEHOUSE_REAPER_INTERVAL_S": str(cfg.reaper_interval_s)})
            server = Server(b, procs)
            log(f"server up on {server.base}; warm-up")
            warm = range(1_000_000, 1_000_010)
            enqueue(warm)
            _wait(rec, warm, 120)

            # 1. burst
            burst = range(cfg.burst)
            log(f"burst: {cfg.burst} notifications")
            pids = _tree(server.pid)
            out["server_processes"] = len(pids)
            with CpuMeter({"server": pids}, pg_db=b.pg_db) as meter:
                t0 = time.time()
                for i in range(0, cfg.burst, 100):
                    enqueue(range(i, min(i + 100, cfg.burst)))
                _wait(rec, burst, cfg.timeout_s)
            last = max(rec.arrived[s] for s in burst)
            lat = [rec.arrived[s] - committed[s] for s in burst]
            cpu = meter.result(per=cfg.burst)
            out["burst"] = {
                "notifications": cfg.burst, "seconds": round(last - t0, 3),
                "delivered_per_s": round(cfg.burst / (last - t0), 1),
                "enqueue_to_delivered_ms": {"p50": round(1000 * pct(lat, 50), 1), "p99": round(1000 * pct(lat, 99), 1),
                                            "max": round(1000 * max(lat), 1)},
                "cpu_ms_per_notification": cpu.get("cpu_ms_per_phase"), "cpu": cpu["cpu_s"],
                "machine_busy_pct": cpu["machine_busy_pct"]}
            log(f"burst: {out['burst']['delivered_per_s']} delivered/s")

            # 2. paced
            paced = range(cfg.burst, cfg.burst + cfg.paced)
            log(f"paced: {cfg.paced} notifications at {cfg.rate}/s")
            start = time.monotonic()
            for k, s in enumerate(paced):
                delay = start + k / cfg.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                enqueue(range(s, s + 1))
            _wait(rec, paced, cfg.timeout_s)
            lat = [rec.arrived[s] - committed[s] for s in paced]
            out["paced"] = {"notifications": cfg.paced, "rate_per_s": cfg.rate,
                            "enqueue_to_delivered_ms": {"p50": round(1000 * pct(lat, 50), 1),
                                                        "p99": round(1000 * pct(lat, 99), 1),
                                                        "max": round(1000 * max(lat), 1)}}
            with ctx.db.read() as conn:
                counts = alerts_store.notification_counts(conn)
            out["outbox"] = counts
            out["receiver"] = {"delivered": len(rec.arrived), "duplicates": rec.duplicates,
                               "bad_signatures": rec.bad_signatures}
            out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(out, indent=2, default=str))
        finally:
            procs.stop_all()
            rec.stop()
            ctx.db.dispose()


if __name__ == "__main__":
    main()
