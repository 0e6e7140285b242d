"""A hypothesis state machine over the real services (SQLite): whatever sequence of creates, claims,
heartbeats, completions, failures, releases, cancels and reaps (with the clock moving) a caller makes,
no run or phase ever takes an illegal status, and every trail stays complete.

Statuses are read back from the database after every step and each change is checked against the
transition tables of domain/states.py (a step may chain several transitions, e.g. running → queued
on a retryable failure: the change must be reachable in the table)."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.domain.states import (
    PHASE_TRANSITIONS,
    RUN_FINISHED,
    RUN_TRANSITIONS,
    PhaseStatus,
    RunStatus,
)
from lakehouse.services import protocol, runs
from lakehouse.services.context import Context, open_context
from lakehouse.services.errors import ServiceError
from lakehouse.settings import Settings
from lakehouse.store import queue
from lakehouse.store.migrations import upgrade

_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="lh-sm-template-")) / "control.db"
        upgrade(f"sqlite:///{path}")
        _TEMPLATE = path
    return _TEMPLATE


def _closure(table: dict[Any, frozenset[Any]]) -> dict[Any, set[Any]]:
    """Every status reachable from each status in one or more steps (and itself)."""
    out = {}
    for start in table:
        seen, todo = {start}, [start]
        while todo:
            for nxt in table[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[start] = seen
    return out


PHASE_REACH = _closure(PHASE_TRANSITIONS)
RUN_REACH = _closure(RUN_TRANSITIONS)
LEASED = {PhaseStatus.CLAIMED, PhaseStatus.RUNNING}


class QueueMachine(RuleBasedStateMachine):
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lh-sm-"))
        shutil.copy(_template(), self.dir / "control.db")
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        s = Settings(home=self.dir / "home", database_url=f"sqlite:///{self.dir / 'control.db'}", lease_ttl_s=30,
                     retry_base_s=1, retry_max_s=4, claim_start_timeout_s=60)
        self.ctx: Context = open_context(s)
        self.ctx.clock = lambda: self.now
        self.run_ids: list[str] = []
        self.seen: dict[tuple[str, str], PhaseStatus] = {}
        self.seen_runs: dict[str, RunStatus] = {}

    def teardown(self) -> None:
        self.ctx.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- rules -------------------------------------------------------------------------------

    @rule(n=st.integers(1, 3), attempts=st.integers(1, 3), timeout=st.sampled_from([None, 20.0]))
    def create(self, n: int, attempts: int, timeout: float | None) -> None:
        req = RunRequest(spec_slug="sm", git_sha="g", phases=[
            PhaseSpec(name=f"p{i}", type="noop", max_attempts=attempts, timeout_s=timeout) for i in range(n)])
        run, _ = runs.create_run(self.ctx, req, SYSTEM)
        self.run_ids.append(run["run_id"])

    @rule(target=leases, max_phases=st.integers(1, 2), start=st.booleans())
    def claim(self, max_phases: int, start: bool) -> Any:
        got = protocol.claim(self.ctx, SYSTEM, "sm-worker", ["noop"], max_phases=max_phases, start=start)
        return [(c["run_id"], c["lease_token"]) for c in got]

    @rule(held=leases)
    def heartbeat(self, held: list[tuple[str, str]]) -> None:
        for run_id, token in held:
            self._lease_call(protocol.heartbeat, run_id, token)

    @rule(held=consumes(leases))
    def complete(self, held: list[tuple[str, str]]) -> None:
        for run_id, token in held:
            self._lease_call(protocol.complete, run_id, token, {"outputs": {}})

    @rule(held=consumes(leases), retryable=st.booleans())
    def fail(self, held: list[tuple[str, str]], retryable: bool) -> None:
        for run_id, token in held:
            self._lease_call(protocol.fail, run_id, token, "boom", retryable)

    @rule(held=consumes(leases))
    def release(self, held: list[tuple[str, str]]) -> None:
        for run_id, token in held:
            self._lease_call(protocol.release, run_id, token)

    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        if self.run_ids:
            try:
                runs.cancel_run(self.ctx, self.run_ids[i % len(self.run_ids)], SYSTEM)
            except ServiceError:
                pass  # already finished: a conflict, nothing changed

    @rule(seconds=st.sampled_from([0.5, 5.0, 31.0, 90.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        protocol.reap(self.ctx)

    def _lease_call(self, fn: Any, run_id: str, token: str, *args: Any) -> None:
        try:
            fn(self.ctx, SYSTEM, run_id, token, *args)
        except ServiceError:
            pass  # a lost lease (409) or a finished run: refused, nothing changed

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def statuses_are_legal_and_trails_complete(self) -> None:
        if not hasattr(self, "ctx"):
            return
        with self.ctx.db.read() as conn:
            for run_id in self.run_ids:
                run = queue.get_run(conn, run_id)
                assert run is not None
                status = RunStatus(run["status"])
                before = self.seen_runs.get(run_id, RunStatus.QUEUED)
                assert status in RUN_REACH[before], f"run went {before} → {status}"
                self.seen_runs[run_id] = status
                phases = queue.run_phases(conn, run_id)
                leased = [p for p in phases if PhaseStatus(p["status"]) in LEASED]
                assert len(leased) <= 1, "phases of one run run one after the other"
                if status in RUN_FINISHED:
                    assert not leased, f"a {status} run still holds a lease"
                    assert all(PhaseStatus(p["status"]) != PhaseStatus.QUEUED for p in phases)
                if status == RunStatus.SUCCEEDED:
                    assert all(p["status"] == PhaseStatus.SUCCEEDED.value for p in phases)
                for p in phases:
                    ps = PhaseStatus(p["status"])
                    prev = self.seen.get((run_id, p["name"]), PhaseStatus.PENDING if p["idx"] else PhaseStatus.QUEUED)
                    assert ps in PHASE_REACH[prev], f"phase {p['name']} went {prev} → {ps}"
                    self.seen[(run_id, p["name"])] = ps
                    if ps in LEASED:
                        assert p["lease_token"] and p["lease_expires_at"] is not None
                seqs = [e["seq"] for e in queue.read_events(conn, run_id, 0, 100_000)]
                assert seqs == list(range(1, len(seqs) + 1)), "per-run sequence numbers have no gap"
                assert seqs and seqs[-1] == run["last_seq"]


TestQueueStateMachine = QueueMachine.TestCase
TestQueueStateMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def test_the_machine_can_fail() -> None:
    """The invariants are not vacuous: an illegal status written behind the services' back is caught."""
    machine = QueueMachine()
    try:
        machine.create(1, 1, None)
        with machine.ctx.db.write() as conn:
            from sqlalchemy import update

            from lakehouse.store.tables import phases

            conn.execute(update(phases).values(status=PhaseStatus.SUCCEEDED.value))
        machine.statuses_are_legal_and_trails_complete()
        with machine.ctx.db.write() as conn:
            conn.execute(update(phases).values(status=PhaseStatus.QUEUED.value))
        with pytest.raises(AssertionError):
            machine.statuses_are_legal_and_trails_complete()
    finally:
        machine.teardown()
