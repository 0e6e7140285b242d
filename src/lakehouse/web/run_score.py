"""A run's score as its page shows it: the stored breakdown (services/scores.py) with, per signal, the
measured value, the baseline it was measured against and one line on how the penalty came about.

The points, weights and values come from the stored breakdown (what the score was computed from);
the baselines are measured again from the run's history (runs created before it, so they do not move).
"""

from __future__ import annotations

from statistics import median
from typing import Any

from lakehouse.domain import scores as rules
from lakehouse.domain.principal import Principal
from lakehouse.domain.states import RUN_FINISHED, PhaseStatus, RunStatus
from lakehouse.services import scores
from lakehouse.services.context import Context
from lakehouse.store import queue
from lakehouse.web.render import duration

GOOD, FAIR = 90.0, 75.0  # at or above GOOD: good; at or above FAIR: fair; below: poor (a failed run is 70)
LABELS = {"outcome": "Outcome", "duration": "Duration", "retries": "Retries", "dq": "Data quality",
          "volume": "Row volume", "freshness": "Freshness", "cost": "Cost (runtime)"}


def band(score: float | None) -> tuple[str, str]:
    """(status look key, word) of a score: the badge's colour and icon come from the status looks."""
    if score is None:
        return PhaseStatus.PENDING.value, "not scored"
    if score >= GOOD:
        return "ok", "good"
    if score >= FAIR:
        return "stale", "fair"
    return RunStatus.FAILED.value, "poor"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:g}"


def _explain(name: str, value: Any, f: rules.RunFacts) -> tuple[str, str, str]:
    """(value, baseline, explanation) of one signal, as text."""
    if name == "outcome":
        why = {RunStatus.FAILED.value: "the run failed: all of this weight is lost",
               RunStatus.CANCELLED.value: "the run was cancelled: half of this weight is lost"}.get(
            str(value), "the run succeeded")
        return str(value), RunStatus.SUCCEEDED.value, why
    if name == "duration":
        shown = duration(f.duration_s)
        if value is None or not f.baseline_duration_s:
            return shown, "—", "not measured: fewer than 3 earlier successful runs of this pipeline"
        return (shown, f"median {duration(f.baseline_duration_s)}",
                f"{float(value):.2f}x the median of earlier successful runs; free up to 1x, all lost at "
                f"{rules.DURATION_FULL_RATIO:g}x")
    if name == "retries":
        return (f"{value} extra attempt{'s' if value != 1 else ''}", "0",
                f"each attempt beyond the first costs 1/{rules.RETRIES_FULL}, {rules.RETRIES_FULL} or more cost all")
    if name == "dq":
        failed, warnings = (value or {}).get("failed", 0), (value or {}).get("warnings", 0)
        return (f"{failed} failed, {warnings} warning{'s' if warnings != 1 else ''}", "0 failed",
                f"a failed error check costs all, each failed warning {rules.DQ_WARNING_PENALTY:g}")
    if name == "volume":
        rows = "—" if f.rows_published is None else f"{_num(f.rows_published)} rows"
        if value is None:
            why = ("not measured: the run published no row counts" if f.rows_published is None else
                   f"not measured: fewer than {rules.VOLUME_MIN_HISTORY} earlier runs that published")
            return rows, "—", why
        base = f"median {_num(median(f.rows_history))} rows" if f.rows_history else "—"
        z = value if isinstance(value, str) else f"{float(value):.2f}"
        return (rows, base, f"robust z-score {z} against {len(f.rows_history)} earlier runs; free up to "
                            f"|z| {rules.VOLUME_Z_START:g}, all lost at {rules.VOLUME_Z_FULL:g}")
    if name == "freshness":
        slo = f"SLO {duration(f.freshness_slo_s)}"
        if value is None:
            return "—", slo, "not measured: the run published no table with a source change time"
        return (f"{duration(float(value))} behind", slo,
                "newest source change it published, behind the run's end; free up to the SLO, all lost at twice it")
    # cost
    runtime = (value or {}).get("runtime_s")
    ratio = (value or {}).get("ratio")
    shown = duration(runtime) if runtime is not None else "—"
    if ratio is None or not f.baseline_runtime_s:
        return shown, "—", "not measured: fewer than 3 earlier successful runs with phase times"
    return (shown, f"median {duration(f.baseline_runtime_s)}",
            f"{float(ratio):.2f}x the median runtime seconds (all phases); free up to 1x, all lost at "
            f"{rules.COST_FULL_RATIO:g}x")


def score_view(ctx: Context, principal: Principal, run_id: str, status: str) -> dict[str, Any]:
    """What the run page shows of a run's score; an unfinished run is not scored yet."""
    if RunStatus(status) not in RUN_FINISHED:
        return {"scored": False, "score": None, "band": band(None), "rows": []}
    got = scores.run_score(ctx, principal, run_id)  # checks the principal; scores the run now if the pass has not
    with ctx.db.read() as conn:
        row = queue.get_run(conn, run_id)
        assert row is not None  # run_score found it
        facts = scores.facts(conn, row)
    total = sum(float(r["weight"]) for r in got["signals"]) or 1.0
    rows = []
    for r in got["signals"]:
        value, baseline, why = _explain(r["signal"], r["value"], facts)
        rows.append({"signal": r["signal"], "label": LABELS.get(r["signal"], r["signal"]), "value": value,
                     "baseline": baseline, "weight": float(r["weight"]), "share": 100 * float(r["weight"]) / total,
                     "points_lost": float(r["points_lost"]), "why": why})
    return {"scored": True, "score": float(got["score"]), "band": band(float(got["score"])), "rows": rows,
            "computed_at": got["computed_at"]}
