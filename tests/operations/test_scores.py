"""Run scores: constructed histories where each signal moves the score as docs/operations.md says."""

from __future__ import annotations

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.scores import DEFAULT_WEIGHTS, RunFacts, compute_run_score, robust_z
from lakehouse.services import alerts, scores
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput
from tests.clock_support import Clock
from tests.operations.conftest import dq_event, fail_run, start_run, succeed_run


def facts(**kw: object) -> RunFacts:
    base: dict[str, object] = dict(status="succeeded", duration_s=10.0, baseline_duration_s=10.0, extra_attempts=0,
                                   dq_failed=0, dq_warnings=0, rows_published=100.0,
                                   rows_history=(100.0, 98.0, 102.0, 101.0, 99.0), freshness_lag_s=60.0,
                                   runtime_s=10.0, baseline_runtime_s=10.0)
    base.update(kw)
    return RunFacts(**base)  # type: ignore[arg-type]


def lost(f: RunFacts, weights: dict[str, float] | None = None) -> dict[str, float]:
    _, rows = compute_run_score(f, weights)
    return {r["signal"]: r["points_lost"] for r in rows}


def test_a_clean_run_scores_100() -> None:
    score, rows = compute_run_score(facts())
    assert score == 100 and [r["signal"] for r in rows] == list(DEFAULT_WEIGHTS)


@pytest.mark.parametrize(("change", "signal", "points"), [
    ({"status": "failed"}, "outcome", 30.0),
    ({"status": "cancelled"}, "outcome", 15.0),
    ({"duration_s": 20.0}, "duration", 7.5),  # 2x the baseline: half of its weight
    ({"duration_s": 40.0}, "duration", 15.0),  # 3x or more: all of it
    ({"extra_attempts": 1}, "retries", 5.0),
    ({"extra_attempts": 5}, "retries", 15.0),
    ({"dq_failed": 1}, "dq", 15.0),
    ({"dq_warnings": 2}, "dq", 7.5),
    ({"rows_published": 1000.0}, "volume", 10.0),  # far outside the history
    ({"freshness_lag_s": 1350.0}, "freshness", 5.0),  # 1.5x the 15 min SLO
    ({"runtime_s": 25.0}, "cost", 2.5),  # 2.5x the median: half of its weight
])
def test_each_signal_moves_the_score(change: dict[str, object], signal: str, points: float) -> None:
    f = facts(**change)
    score, _ = compute_run_score(f)
    assert lost(f)[signal] == pytest.approx(points, abs=0.01)
    assert score == pytest.approx(100 - sum(lost(f).values()), abs=0.1)
    assert sum(v for k, v in lost(f).items() if k != signal) == 0 or signal == "duration"


def test_volume_uses_a_robust_z_score() -> None:
    history = [100.0, 98.0, 102.0, 101.0, 99.0]
    assert robust_z(100.0, history) == 0
    assert abs(robust_z(103.0, history) or 0) < 3  # within the noise: no penalty
    assert lost(facts(rows_published=103.0))["volume"] == 0
    assert robust_z(100.0, history[:3]) is None  # too little history: not measured
    assert lost(facts(rows_history=(5.0, 5.0, 5.0, 5.0, 5.0), rows_published=6.0))["volume"] == 10


def test_weights_change_what_a_signal_costs() -> None:
    f = facts(status="failed")
    assert compute_run_score(f, {"outcome": 0})[0] == 100
    assert compute_run_score(f, {name: 0 for name in DEFAULT_WEIGHTS} | {"outcome": 1})[0] == 0


def test_scores_from_constructed_histories(ctx: Context, clock: Clock) -> None:
    for _ in range(3):
        succeed_run(ctx, clock, took_s=10)
    calm = succeed_run(ctx, clock, took_s=10)
    slow = succeed_run(ctx, clock, took_s=30)
    retried = succeed_run(ctx, clock, took_s=10, extra_attempts=1)
    dq = succeed_run(ctx, clock, took_s=10, events=[dq_event(False)])
    failed = fail_run(ctx, clock)
    got = {name: scores.run_score(ctx, SYSTEM, run_id) for name, run_id in
           [("calm", calm), ("slow", slow), ("retried", retried), ("dq", dq), ("failed", failed)]}
    assert got["calm"]["score"] == 100
    by_signal = {n: {r["signal"]: r["points_lost"] for r in s["signals"]} for n, s in got.items()}
    assert by_signal["slow"]["duration"] == 15 and by_signal["slow"]["cost"] > 0
    assert by_signal["retried"]["retries"] == 5
    assert by_signal["dq"]["dq"] == 15
    assert by_signal["failed"]["outcome"] == 30
    assert all(got[n]["score"] < 100 for n in ("slow", "retried", "dq", "failed"))
    worst_first = [r["run_id"] for r in scores.list_scores(ctx, SYSTEM, order="score", spec_slug="sales")]
    assert worst_first[0] == failed and worst_first[-1] in {calm} | {r["run_id"] for r in
                                                                     scores.list_scores(ctx, SYSTEM)}
    below = scores.list_scores(ctx, SYSTEM, below=99)
    assert {r["run_id"] for r in below} == {slow, retried, dq, failed}
    with pytest.raises(Conflict):
        scores.run_score(ctx, SYSTEM, start_run(ctx))


def test_workspace_weights_and_the_score_rule(ctx: Context, clock: Clock) -> None:
    alerts.create_rule(ctx, SYSTEM, "default", {"name": "low", "kind": "score_below", "params": {"threshold": 80}})
    with pytest.raises(InvalidInput):
        scores.set_weights(ctx, SYSTEM, "default", {"nope": 1})
    with pytest.raises(InvalidInput):
        scores.set_weights(ctx, SYSTEM, "default", {"outcome": -1})
    fail_run(ctx, clock)
    assert scores.score_pending(ctx) == 1
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alert["kind"] == "score_below" and alert["details"]["score"] == 70
    scores.set_weights(ctx, SYSTEM, "default", {"outcome": 90})
    run_id = fail_run(ctx, clock)
    assert scores.run_score(ctx, SYSTEM, run_id)["score"] == pytest.approx(100 - 100 * 90 / 160, abs=0.1)
    succeed_run(ctx, clock)
    scores.score_pending(ctx)
    assert alerts.list_alerts(ctx, SYSTEM) == []  # a good run clears it
