"""Claim cost of runtime caps: claims per second with 50 caps configured vs none (docs/benchmarks.md).

In process, through services/protocol.py (the set-based claim statement on PostgreSQL), on a fresh
database: ``--runs`` runs spread over 10 workspaces are queued, then rounds alternate between no caps
and 50 caps (workspace, pipeline, capability and executor caps with concurrency limits, daily budgets
and timeouts, none of them reached, so the same work is claimed) so a load change on the machine hits
both. Each claim is timed alone (the complete that follows it is not). Prints one JSON document.

    .venv/bin/python bench/caps_bench.py                   # PostgreSQL
    .venv/bin/python bench/caps_bench.py --backend sqlite  # the SQLite claim path
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import backend, log, machine, summary_ms

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import caps, protocol, runs, workspaces
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store.migrations import upgrade

EXECUTOR = Principal(name="bench", role="executor")
WORKSPACES = [f"ws{i}" for i in range(10)]
PIPELINES = [f"pipe{i}" for i in range(4)]


def _caps(ctx: Any, budgets: bool = True) -> list[int]:
    ids = []
    day = {"runtime_s_per_day": 1e7} if budgets else {}
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


def _round(ctx: Any, claims: int) -> list[float]:
    took = []
    for i in range(claims):
        t0 = time.perf_counter()
        got = protocol.claim(ctx, EXECUTOR, f"bench-{i % 2}", ["noop"], max_phases=1)
        took.append(time.perf_counter() - t0)
        if not got:
            raise SystemExit("the queue ran dry: raise --runs")
        protocol.complete(ctx, EXECUTOR, got[0]["run_id"], got[0]["lease_token"], {})
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", default="postgres", choices=["postgres", "sqlite"])
    ap.add_argument("--runs", type=int, default=3000, help="runs queued before the rounds")
    ap.add_argument("--claims", type=int, default=250, help="claims per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each scenario (alternating)")
    ap.add_argument("--no-budgets", action="store_true", help="the 50 caps without daily runtime budgets")
    cfg = ap.parse_args()
    with backend(cfg.backend) as b:
        upgrade(b.database_url)
        ctx = open_context(Settings(home=b.home, database_url=b.database_url))
        try:
            for ws in WORKSPACES:
                workspaces.create(ctx, ws)
            log(f"queueing {cfg.runs} runs")
            for i in range(cfg.runs):
                runs.create_run(ctx, RunRequest(
                    spec_slug=PIPELINES[i % len(PIPELINES)], git_sha="abc1234", environment="dev",
                    workspace=WORKSPACES[i % len(WORKSPACES)], phases=[PhaseSpec(name="p", type="noop")]), SYSTEM)
            _round(ctx, 50)  # warm up: statements built, caches hot
            results: dict[str, list[float]] = {"none": [], "caps_50": []}
            for r in range(cfg.rounds):
                for scenario in ("none", "caps_50"):
                    ids = _caps(ctx, not cfg.no_budgets) if scenario == "caps_50" else []
                    took = _round(ctx, cfg.claims)
                    results[scenario] += took
                    log(f"round {r} {scenario}: {cfg.claims / sum(took):.0f} claims/s")
                    for cap_id in ids:
                        caps.delete_cap(ctx, SYSTEM, cap_id)
            out: dict[str, Any] = {"backend": cfg.backend, "machine": machine(), "queued_runs": cfg.runs,
                                   "budgets": not cfg.no_budgets,
                                   "claims_per_scenario": len(results["none"]), "workspaces": len(WORKSPACES)}
            for k, v in results.items():
                out[k] = {"claims_per_s": round(len(v) / sum(v), 1), **summary_ms(v)}
            base, capped = out["none"]["mean_ms"], out["caps_50"]["mean_ms"]
            out["caps_overhead_pct_of_claim_mean"] = round(100 * (capped - base) / base, 1)
            out["caps_overhead_pct_of_claim_p50"] = round(
                100 * (out["caps_50"]["p50_ms"] - out["none"]["p50_ms"]) / out["none"]["p50_ms"], 1)
            print(json.dumps(out, indent=2))
        finally:
            ctx.db.dispose()


if __name__ == "__main__":
    main()
