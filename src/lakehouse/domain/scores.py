"""Multi-signal run scores, pure: each signal turns a measured value into a penalty in [0, 1]; the
score is ``100 x (1 - Σ weight·penalty / Σ weight)``, rounded to one decimal. docs/operations.md
documents every signal with the values where its penalty starts and saturates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lakehouse.domain.alerts import median

# The signals, in the order the breakdown lists them, and their default weights (relative: any
# positive numbers; a weight of 0 leaves a signal out).
DEFAULT_WEIGHTS: dict[str, float] = {
    "outcome": 30.0,  # failed 1, cancelled 0.5, succeeded 0
    "duration": 15.0,  # run wall time vs the median of the pipeline's previous successful runs
    "retries": 15.0,  # attempts beyond the first, over all phases (lease expiries included)
    "dq": 15.0,  # failed data-quality checks (errors) and warnings
    "volume": 10.0,  # rows published vs history: robust z-score
    "freshness": 10.0,  # newest source change in what it published, behind the run's end
    "cost": 5.0,  # runtime seconds (sum over phases) vs the median of previous successful runs
}
SIGNALS = tuple(DEFAULT_WEIGHTS)

DURATION_FULL_RATIO = 3.0  # penalty 0 at ≤ 1x the baseline, 1 at ≥ 3x
COST_FULL_RATIO = 4.0  # penalty 0 at ≤ 1x the median runtime seconds, 1 at ≥ 4x
RETRIES_FULL = 3  # penalty 1 at 3 extra attempts or more
DQ_WARNING_PENALTY = 0.25  # per failed warn-severity check; a failed error check costs 1
VOLUME_Z_START, VOLUME_Z_FULL = 3.0, 6.0  # |robust z| ≤ 3 costs nothing, ≥ 6 costs everything
VOLUME_MIN_HISTORY = 5
FRESHNESS_SLO_S = 900.0  # penalty 0 at ≤ the SLO behind, 1 at ≥ twice the SLO


class InvalidWeights(ValueError):
    """Unknown signal names, negative or non-numeric weights, or all weights zero."""


def clean_weights(weights: dict[str, Any] | None) -> dict[str, float]:
    out = dict(DEFAULT_WEIGHTS)
    for name, value in (weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise InvalidWeights(f"unknown signal {name!r}; use {', '.join(SIGNALS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value > 1000:
            raise InvalidWeights(f"the weight of {name} must be a number from 0 to 1000")
        out[name] = float(value)
    if sum(out.values()) <= 0:
        raise InvalidWeights("at least one weight must be above 0")
    return out


@dataclass(frozen=True)
class RunFacts:
    """What the services measured of one run and its history (None: not measurable)."""

    status: str
    duration_s: float | None
    baseline_duration_s: float | None  # median of the previous successful runs of the same pipeline
    extra_attempts: int
    dq_failed: int
    dq_warnings: int
    rows_published: float | None
    rows_history: tuple[float, ...]
    freshness_lag_s: float | None
    runtime_s: float | None
    baseline_runtime_s: float | None
    freshness_slo_s: float = FRESHNESS_SLO_S


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def robust_z(value: float, history: list[float]) -> float | None:
    """0.6745·(x - median)/MAD; None without enough history. A history without spread makes any
    different value an outlier (z = ±inf)."""
    if len(history) < VOLUME_MIN_HISTORY:
        return None
    med = median(history)
    assert med is not None
    mad = median([abs(h - med) for h in history])
    assert mad is not None
    if mad == 0:
        return 0.0 if value == med else float("inf") if value > med else float("-inf")
    return 0.6745 * (value - med) / mad


def penalties(f: RunFacts) -> dict[str, tuple[Any, float]]:
    """signal → (measured value, penalty in [0, 1])."""
    out: dict[str, tuple[Any, float]] = {}
    out["outcome"] = (f.status, {"failed": 1.0, "cancelled": 0.5}.get(f.status, 0.0))
    if f.duration_s is not None and f.baseline_duration_s:
        ratio = f.duration_s / f.baseline_duration_s
        out["duration"] = (round(ratio, 3), _clamp((ratio - 1) / (DURATION_FULL_RATIO - 1)))
    else:
        out["duration"] = (None, 0.0)
    out["retries"] = (f.extra_attempts, _clamp(f.extra_attempts / RETRIES_FULL))
    out["dq"] = ({"failed": f.dq_failed, "warnings": f.dq_warnings},
                 _clamp(f.dq_failed + DQ_WARNING_PENALTY * f.dq_warnings))
    z = robust_z(f.rows_published, list(f.rows_history)) if f.rows_published is not None else None
    if z is None:
        out["volume"] = (None, 0.0)
    else:
        out["volume"] = (z if abs(z) != float("inf") else str(z),
                         _clamp((abs(z) - VOLUME_Z_START) / (VOLUME_Z_FULL - VOLUME_Z_START)))
    if f.freshness_lag_s is not None:
        out["freshness"] = (round(f.freshness_lag_s, 1),
                            _clamp((f.freshness_lag_s - f.freshness_slo_s) / f.freshness_slo_s))
    else:
        out["freshness"] = (None, 0.0)
    if f.runtime_s is not None and f.baseline_runtime_s:
        ratio = f.runtime_s / f.baseline_runtime_s
        out["cost"] = ({"runtime_s": round(f.runtime_s, 3), "ratio": round(ratio, 3)},
                       _clamp((ratio - 1) / (COST_FULL_RATIO - 1)))
    else:
        out["cost"] = ({"runtime_s": None if f.runtime_s is None else round(f.runtime_s, 3), "ratio": None}, 0.0)
    return out


def compute_run_score(facts: RunFacts, weights: dict[str, Any] | None = None) -> tuple[float, list[dict[str, Any]]]:
    """(score 0-100, breakdown): one row per signal with its value, penalty, weight and the points it
    cost."""
    w = clean_weights(weights)
    total = sum(w.values())
    rows = []
    lost = 0.0
    for name, (value, penalty) in penalties(facts).items():
        points = 100.0 * w[name] * penalty / total
        lost += points
        rows.append({"signal": name, "value": value, "penalty": round(penalty, 4), "weight": w[name],
                     "points_lost": round(points, 2)})
    return round(max(0.0, 100.0 - lost), 1), rows
