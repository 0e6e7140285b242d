"""Claim cost of runtime caps: claims per second with 50 caps configured vs none (docs/benchmarks.md).

In process, through services/protocol.py (the set-based claim statement on PostgreSQL), on a fresh
database: ``--runs`` runs spread over 10 workspaces are queued, then rounds alternate between no caps
and 50 caps (workspace, pipeline, capability and executor caps with concurrency limits, daily budgets
and timeouts, none of them reached, so the same work is claimed) so a load change on the machine hits
both. Each claim is timed alone (the complete that follows it is not): wall clock, and CPU — this
process's (``time.process_time``) and, on PostgreSQL, the bench database's backends' (from /proc,
clock ticks summed over the claims), which a loaded machine does not inflate the way it does wall
clock. Prints one JSON document.

    .venv/bin/python bench/caps_bench.py                   # PostgreSQL
    .venv/bin/python bench/caps_bench.py --backend sqlite  # the SQLite claim path
    .venv/bin/python bench/caps_bench.py --runs 10000 --claims 100 --rounds 2   # a deep queue
    .venv/bin/python bench/caps_bench.py --tight-budgets   # budgets the install's total passes (none reached)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _proc_cpu, backend, log, machine, summary_ms
from sqlalchemy import text

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import caps, protocol, runs, workspaces
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store import caps as caps_store
from lakehouse.store.migrations import upgrade

EXECUTOR = Principal(name="bench", role="executor")
WORKSPACES = [f"ws{i}" for i in range(10)]
PIPELINES = [f"pipe{i}" for i in range(4)]


def _spent_today(ctx: Any) -> float:
    """Attempt seconds of the whole install today (the claim's view, services/caps.report's source)."""
    with ctx.db.read() as conn:
        return sum(float(g["v"]) for g in caps_store.usage_groups(conn, ctx.clock())[1])


def _caps(ctx: Any, budgets: bool = True, tight: bool = False) -> list[int]:
    """The 50 caps. ``tight``: each budget is 0.9 x what the whole install spent today, so the
    install's total passes the smallest budget (the claim must then sum today's attempts by scope)
    while no workspace, spending about a tenth of it, reaches its own."""
    ids = []
    day = {"runtime_s_per_day": max(0.9 * _spent_today(ctx), 0.001) if tight else 1e7} if budgets else {}
    for i, ws in enumerate(WORKSPACES):  # 10 workspace caps
        ids.append(caps.set_cap(ctx, SYSTEM, ws, "workspace", None,
                                {"max_concurrent": 1000, **day})["id"])
        for p in PIPELINES[:2]:  # 20 pipeline caps
            ids.append(caps.set_cap(ctx, SYSTEM, ws, "pipeline", p, {"max_concurrent": 500,
                                                                     "max_phase_timeout_s": 3600})["id"])
        ids.append(caps.set_cap(ctx, SYSTEM, ws, "capability", "noop",  # 10 capability caps
                                {"max_concurrent": 800, **day})["id"])
        ids.append(caps.set_cap(ctx, SYSTEM, ws, "executor", f"bench-{i % 2}",  # 10 executor caps
                                {"max_concurrent": 900, "max_phase_timeout_s": 7200})["id"])
    assert len(ids) == 50
    return ids


class Cpu:
    """CPU seconds of this process and of the PostgreSQL backends serving the bench database."""

    def __init__(self, ctx: Any) -> None:
        self.pids: list[int] = []
        if ctx.db.engine.dialect.name == "postgresql":
            with ctx.db.engine.connect() as c:
                self.pids = [int(p) for p in c.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()]

    def snap(self) -> tuple[float, float]:
        return time.process_time(), sum(_proc_cpu(p) for p in self.pids)


def _round(ctx: Any, claims: int, cpu: Cpu | None = None) -> tuple[list[float], float, float]:
    """(wall seconds of each claim, client CPU s, PostgreSQL CPU s) over ``claims`` claims."""
    took = []
    client = pg = 0.0
    for i in range(claims):
        c0, p0 = cpu.snap() if cpu else (0.0, 0.0)
        t0 = time.perf_counter()
        got = protocol.claim(ctx, EXECUTOR, f"bench-{i % 2}", ["noop"], max_phases=1)
        took.append(time.perf_counter() - t0)
        if cpu:
            c1, p1 = cpu.snap()
            client += c1 - c0
            pg += p1 - p0
        if not got:
            raise SystemExit("the queue ran dry: raise --runs")
        protocol.complete(ctx, EXECUTOR, got[0]["run_id"], got[0]["lease_token"], {})
    return took, client, pg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default="postgres", choices=["postgres", "sqlite"])
    ap.add_argument("--runs", type=int, default=3000, help="runs queued before the rounds")
    ap.add_argument("--claims", type=int, default=250, help="claims per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each scenario (alternating)")
    ap.add_argument("--no-budgets", action="store_true", help="the 50 caps without daily runtime budgets")
    ap.add_argument("--tight-budgets", action="store_true",
                    help="budgets at 0.9 x the install's spending today (none reached, but the claim sums by scope)")
    cfg = ap.parse_args()
    mach = machine()  # the load average when the run started
    with backend(cfg.backend) as b:
        upgrade(b.database_url)
        # one pooled connection: the claims run on one PostgreSQL backend, whose CPU is read
        ctx = open_context(Settings(home=b.home, database_url=b.database_url), pool_size=1)
        try:
            for ws in WORKSPACES:
                workspaces.create(ctx, ws)
            log(f"queueing {cfg.runs} runs")
            for i in range(cfg.runs):
                runs.create_run(ctx, RunRequest(
                    spec_slug=PIPELINES[i % len(PIPELINES)], git_sha="abc1234", environment="dev",
                    workspace=WORKSPACES[i % len(WORKSPACES)], phases=[PhaseSpec(name="p", type="noop")]), SYSTEM)
            _round(ctx, 50)  # warm up: statements built, caches hot
            cpu = Cpu(ctx)
            results: dict[str, list[float]] = {"none": [], "caps_50": []}
            cpu_s: dict[str, list[float]] = {"none": [0.0, 0.0], "caps_50": [0.0, 0.0]}
            for r in range(cfg.rounds):
                for scenario in ("none", "caps_50"):
                    ids = _caps(ctx, not cfg.no_budgets, cfg.tight_budgets) if scenario == "caps_50" else []
                    took, client, pg = _round(ctx, cfg.claims, cpu)
                    results[scenario] += took
                    cpu_s[scenario][0] += client
                    cpu_s[scenario][1] += pg
                    log(f"round {r} {scenario}: {cfg.claims / sum(took):.0f} claims/s")
                    for cap_id in ids:
                        caps.delete_cap(ctx, SYSTEM, cap_id)
            out: dict[str, Any] = {"backend": cfg.backend, "machine": mach, "queued_runs": cfg.runs,
                                   "budgets": "none" if cfg.no_budgets else "tight" if cfg.tight_budgets else "1e7 s",
                                   "claims_per_scenario": len(results["none"]), "workspaces": len(WORKSPACES)}
            for k, v in results.items():
                out[k] = {"claims_per_s": round(len(v) / sum(v), 1), **summary_ms(v),
                          "cpu_ms_per_claim": {"client": round(1000 * cpu_s[k][0] / len(v), 3),
                                               "postgres": round(1000 * cpu_s[k][1] / len(v), 3),
                                               "total": round(1000 * sum(cpu_s[k]) / len(v), 3)}}
            base, capped = out["none"]["mean_ms"], out["caps_50"]["mean_ms"]
            out["caps_overhead_pct_of_claim_mean"] = round(100 * (capped - base) / base, 1)
            out["caps_overhead_pct_of_claim_p50"] = round(
                100 * (out["caps_50"]["p50_ms"] - out["none"]["p50_ms"]) / out["none"]["p50_ms"], 1)
            cpu_base, cpu_capped = out["none"]["cpu_ms_per_claim"]["total"], out["caps_50"]["cpu_ms_per_claim"]["total"]
            out["caps_overhead_pct_of_claim_cpu"] = round(100 * (cpu_capped - cpu_base) / cpu_base, 1)
            out["postgres_backends_measured"] = len(cpu.pids)
            out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(out, indent=2))
        finally:
            ctx.db.dispose()


if __name__ == "__main__":
    main()
