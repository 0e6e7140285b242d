"""The claim's cap check where it was made cheaper (store/caps.py ``claim_ctes``; docs/benchmarks.md,
runtime caps), on SQLite and PostgreSQL: a workspace closed by a full cap is skipped but the rest
of the queue is not, capabilities capped in one workspace only, budgets read only for the
workspaces and executors they bear on, pipeline budgets (the run lookup), and a concurrency cap
with room for the whole claim left out of the per-candidate count."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import protocol, runs, workspaces
from lakehouse.services.context import Context
from tests.clock_support import Clock

from .conftest import EXECUTOR
from .test_caps import claim, run, set_cap, work


@pytest.fixture
def wss(ctx: Context, clock: Clock) -> None:
    for ws in ("alpha", "beta"):
        workspaces.create(ctx, ws)


def test_a_capability_full_in_one_workspace_closes_only_that_capability_there(
        ctx: Context, wss: None, clock: Clock) -> None:
    set_cap(ctx, "capability", "gpu", max_concurrent=1)
    a_gpu = [run(ctx, capability="gpu") for _ in range(3)]
    a_cpu = run(ctx)
    clock.advance(1)
    b_gpu = [run(ctx, workspace="beta", capability="gpu") for _ in range(2)]
    [first] = claim(ctx, can=("gpu",))
    assert first["run_id"] == a_gpu[0]  # oldest first; alpha's gpu cap is now full
    got = [c["run_id"] for c in claim(ctx, n=10, can=("gpu",))]
    assert sorted(got) == sorted(b_gpu)  # alpha is closed for gpu, beta is not
    # asked for gpu and noop, alpha is still open for its noop work
    assert [c["run_id"] for c in claim(ctx, n=10)] == [a_cpu]
    assert claim(ctx, n=10) == []


def test_a_full_workspace_cap_skips_the_workspace_and_reopens_when_a_slot_frees(
        ctx: Context, wss: None, clock: Clock) -> None:
    set_cap(ctx, "workspace", max_concurrent=2)
    flood = [run(ctx) for _ in range(30)]
    clock.advance(1)
    late = run(ctx, workspace="beta")
    got = claim(ctx, n=10)
    assert [c["run_id"] for c in got if c["run_id"] in flood] == flood[:2]
    assert late in [c["run_id"] for c in got]
    assert claim(ctx, n=10) == []
    protocol.complete(ctx, EXECUTOR, got[0]["run_id"], got[0]["lease_token"], {})
    assert [c["run_id"] for c in claim(ctx, n=10)] == [flood[2]]


def test_an_executor_budget_holds_that_executor_only(ctx: Context, wss: None, clock: Clock) -> None:
    set_cap(ctx, "executor", "w1", runtime_s_per_day=30)
    first, second = run(ctx), run(ctx)
    [c] = claim(ctx, executor="w1")
    work(ctx, clock, c, 40)
    protocol.complete(ctx, EXECUTOR, first, c["lease_token"], {})
    assert claim(ctx, executor="w1") == []  # w1 spent its 30 s today
    assert [c["run_id"] for c in claim(ctx, executor="w2")] == [second]  # w2 has no budget


def test_a_pipeline_budget_beside_other_workspaces_budgets(ctx: Context, wss: None, clock: Clock) -> None:
    clock.now = clock.now.replace(hour=1)
    set_cap(ctx, "pipeline", "sales", runtime_s_per_day=50)
    set_cap(ctx, "workspace", workspace="beta", runtime_s_per_day=10_000)
    first, later, other = run(ctx), run(ctx), run(ctx, spec="other")
    beta = run(ctx, workspace="beta", spec="sales")
    [c] = claim(ctx)
    assert c["run_id"] == first
    work(ctx, clock, c, 60)
    protocol.complete(ctx, EXECUTOR, first, c["lease_token"], {})
    got = sorted(c["run_id"] for c in claim(ctx, n=10))
    assert got == sorted([other, beta])  # alpha's sales pipeline is over its budget; beta's is not capped
    assert runs.get_run(ctx, later, SYSTEM)["status"] == "queued"
    clock.now = (clock.now + timedelta(days=1)).replace(hour=0, minute=0, second=5)
    assert [c["run_id"] for c in claim(ctx, n=10)] == [later]


def test_a_concurrency_cap_with_room_for_the_claim_is_never_passed(ctx: Context, wss: None) -> None:
    set_cap(ctx, "pipeline", "sales", max_concurrent=3)
    for _ in range(6):
        run(ctx)
    assert len(claim(ctx, n=1)) == 1  # room 3 >= 1: the cap is not counted per candidate
    assert len(claim(ctx, n=1)) == 1
    assert len(claim(ctx, n=2)) == 1  # room 1 < 2: counted, only one more
    assert claim(ctx, n=1) == []
    assert claim(ctx, n=5) == []


def test_other_workspaces_spending_does_not_count_against_a_budget(ctx: Context, wss: None, clock: Clock) -> None:
    # the install's total today (beta's 120 s + alpha's 30 s) passes alpha's budget: the claim then
    # sums by scope, and alpha's own 30 s do not
    set_cap(ctx, "workspace", runtime_s_per_day=100)
    b = run(ctx, workspace="beta")
    [cb] = claim(ctx)
    assert cb["run_id"] == b
    work(ctx, clock, cb, 120)
    protocol.complete(ctx, EXECUTOR, b, cb["lease_token"], {})
    a1, a2, a3 = run(ctx), run(ctx), run(ctx)
    [ca] = claim(ctx)
    assert ca["run_id"] == a1
    work(ctx, clock, ca, 30)
    protocol.complete(ctx, EXECUTOR, a1, ca["lease_token"], {})
    [ca] = claim(ctx)
    assert ca["run_id"] == a2  # 30 s of 100: alpha may go on
    work(ctx, clock, ca, 80)
    protocol.complete(ctx, EXECUTOR, a2, ca["lease_token"], {})
    assert claim(ctx) == []  # 110 s of 100
    assert runs.get_run(ctx, a3, SYSTEM)["status"] == "queued"
