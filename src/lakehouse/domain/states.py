"""Run and phase state machines as data.

The store never writes a status that did not come out of :func:`phase_transition` or
:func:`run_transition`; an illegal transition raises :class:`IllegalTransition`.
"""

from __future__ import annotations

from enum import StrEnum


class IllegalTransition(ValueError):
    """A status change that the transition table does not allow."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PhaseStatus(StrEnum):
    PENDING = "pending"  # waits for the phases before it
    QUEUED = "queued"  # runnable (possibly not before ``available_at``: a retry in backoff)
    CLAIMED = "claimed"  # leased, not yet started
    RUNNING = "running"  # leased and started
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never ran because an earlier phase failed


class AttemptStatus(StrEnum):
    """One lease of a phase (a row of ``phase_attempts``): how it stands, or how it ended."""

    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the holder called ``fail``
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # no heartbeat before the lease ran out (or claimed and never started)
    TIMED_OUT = "timed_out"  # ran past the phase's ``timeout_s``


class PhaseView(StrEnum):
    """Derived, never stored: what a phase is shown as. ``retrying`` is a queued phase that has run
    before (its ``attempt`` > 0), waiting for its next attempt (possibly in backoff)."""

    RETRYING = "retrying"


def shown_phase_status(status: str, attempt: int) -> str:
    """The word a page or the terminal shows for a phase: its status, or ``retrying``."""
    return PhaseView.RETRYING.value if status == PhaseStatus.QUEUED and attempt > 0 else status


RUN_FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
RUN_ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
PHASE_FINISHED = frozenset(
    {PhaseStatus.SUCCEEDED, PhaseStatus.FAILED, PhaseStatus.CANCELLED, PhaseStatus.SKIPPED}
)
PHASE_LEASED = frozenset({PhaseStatus.CLAIMED, PhaseStatus.RUNNING})

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

PHASE_TRANSITIONS: dict[PhaseStatus, frozenset[PhaseStatus]] = {
    PhaseStatus.PENDING: frozenset({PhaseStatus.QUEUED, PhaseStatus.CANCELLED, PhaseStatus.SKIPPED}),
    PhaseStatus.QUEUED: frozenset({PhaseStatus.CLAIMED, PhaseStatus.RUNNING, PhaseStatus.CANCELLED}),
    PhaseStatus.CLAIMED: frozenset(
        {PhaseStatus.RUNNING, PhaseStatus.QUEUED, PhaseStatus.SUCCEEDED, PhaseStatus.FAILED,
         PhaseStatus.CANCELLED}
    ),
    PhaseStatus.RUNNING: frozenset(
        {PhaseStatus.SUCCEEDED, PhaseStatus.FAILED, PhaseStatus.QUEUED, PhaseStatus.CANCELLED}
    ),
    PhaseStatus.SUCCEEDED: frozenset(),
    PhaseStatus.FAILED: frozenset(),
    PhaseStatus.CANCELLED: frozenset(),
    PhaseStatus.SKIPPED: frozenset(),
}


def run_transition(current: str, target: RunStatus) -> RunStatus:
    """Return ``target`` if the run may move there from ``current``; raise otherwise."""
    src = RunStatus(current)
    if target not in RUN_TRANSITIONS[src]:
        raise IllegalTransition(f"run cannot go from {src} to {target}")
    return target


def phase_transition(current: str, target: PhaseStatus) -> PhaseStatus:
    """Return ``target`` if the phase may move there from ``current``; raise otherwise."""
    src = PhaseStatus(current)
    if target not in PHASE_TRANSITIONS[src]:
        raise IllegalTransition(f"phase cannot go from {src} to {target}")
    return target
