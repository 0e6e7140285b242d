"""The transition tables themselves (the services are walked by tests/unit/test_state_machine.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.domain.retry import backoff_seconds, may_retry
from lakehouse.domain.states import (
    PHASE_FINISHED,
    PHASE_TRANSITIONS,
    RUN_FINISHED,
    RUN_TRANSITIONS,
    IllegalTransition,
    PhaseStatus,
    RunStatus,
    phase_transition,
)


def test_finished_states_are_terminal() -> None:
    for s in PHASE_FINISHED:
        assert not PHASE_TRANSITIONS[s]
        for t in PhaseStatus:
            with pytest.raises(IllegalTransition):
                phase_transition(s, t)
    for r in RUN_FINISHED:
        assert not RUN_TRANSITIONS[r]


def test_every_status_has_a_row() -> None:
    assert set(PHASE_TRANSITIONS) == set(PhaseStatus)
    assert set(RUN_TRANSITIONS) == set(RunStatus)


def test_a_pending_phase_cannot_run_without_being_queued() -> None:
    with pytest.raises(IllegalTransition):
        phase_transition(PhaseStatus.PENDING, PhaseStatus.RUNNING)
    with pytest.raises(IllegalTransition):
        phase_transition(PhaseStatus.PENDING, PhaseStatus.SUCCEEDED)


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0.001, max_value=10),
       st.floats(min_value=0.01, max_value=600), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_bounded_and_grows(attempt: int, base: float, cap: float, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff_seconds(attempt, base, cap, rng)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(0, 1, 10)


@pytest.mark.parametrize(("attempt", "max_attempts", "retryable", "expected"), [
    (1, 3, True, True), (3, 3, True, False), (1, 3, False, False), (2, 1, True, False)])
def test_may_retry(attempt: int, max_attempts: int, retryable: bool, expected: bool) -> None:
    assert may_retry(attempt, max_attempts, retryable) is expected
