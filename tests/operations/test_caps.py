"""Runtime caps (docs/operations.md, Caps), on SQLite and PostgreSQL: each cap kind skips work in the
claim without starving the work behind it, fair shares between workspaces, usage derived from the
phases table (killed workers and cancels free their slots), the daily budget, the timeout cap, queue
caps at enqueue (reject and hold) and invalid values."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import caps, protocol, runs, scheduler, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, RateLimited
from tests.clock_support import Clock

from .conftest import EXECUTOR


@pytest.fixture
def wss(ctx: Context, clock: Clock) -> None:
    for ws in ("alpha", "beta"):
        workspaces.create(ctx, ws)


def run(ctx: Context, workspace: str = "alpha", spec: str = "sales", capability: str | None = None,
        phases: int = 1, timeout_s: float | None = None) -> str:
    req = RunRequest(spec_slug=spec, git_sha="abc1234", environment="dev", workspace=workspace,
                     phases=[PhaseSpec(name=f"p{i}", type="noop", capability=capability, max_attempts=2,
                                       timeout_s=timeout_s) for i in range(phases)])
    r, _ = runs.create_run(ctx, req, SYSTEM)
    return str(r["run_id"])


def claim(ctx: Context, n: int = 1, executor: str = "w1", can: tuple[str, ...] = ("noop", "gpu")
          ) -> list[dict[str, Any]]:
    return protocol.claim(ctx, EXECUTOR, executor, list(can), max_phases=n)


def work(ctx: Context, clock: Clock, c: dict[str, Any], seconds: float) -> None:
    """The phase runs for ``seconds``, heartbeating inside its lease."""
    while seconds > 0:
        step = min(seconds, ctx.settings.lease_ttl_s / 2)
        clock.advance(step)
        seconds -= step
        protocol.heartbeat(ctx, EXECUTOR, c["run_id"], c["lease_token"])


def usage(ctx: Context, cap_id: int) -> dict[str, Any]:
    return next(c for c in caps.report(ctx, SYSTEM) if c["id"] == cap_id)


def set_cap(ctx: Context, scope: str, value: str | None = None, workspace: str = "alpha", **limits: Any
            ) -> dict[str, Any]:
    mode = limits.pop("queue_mode", None)
    return caps.set_cap(ctx, SYSTEM, workspace, scope, value, limits, mode)


# --- concurrency, each kind ---------------------------------------------------------------------

@pytest.mark.parametrize("scope,value", [("workspace", None), ("pipeline", "sales"), ("capability", "gpu"),
                                         ("executor", "w1")])
def test_a_concurrency_cap_skips_capped_work_without_starving_the_rest(
        ctx: Context, wss: None, scope: str, value: str | None) -> None:
    cap = set_cap(ctx, scope, value, max_concurrent=1)
    capped = [run(ctx, capability="gpu") for _ in range(3)]  # oldest first: in every kind's scope
    other = [run(ctx, workspace="beta", spec="other") for _ in range(2)]  # behind them, out of scope
    got = claim(ctx, n=10)
    taken = [c["run_id"] for c in got]
    assert sum(r in taken for r in capped) == 1, taken  # the cap: one at a time
    assert all(r in taken for r in other)  # the work behind the capped work still starts
    u = usage(ctx, cap["id"])
    assert u["usage"]["concurrent"] == 1 and u["throttled"] == ["max_concurrent"]
    assert claim(ctx, n=10) == []  # still full
    if scope == "executor":  # another executor is not capped
        assert len(claim(ctx, n=10, executor="w2")) == 2
        return
    first = next(c for c in got if c["run_id"] in capped)
    protocol.complete(ctx, EXECUTOR, first["run_id"], first["lease_token"], {})
    [nxt] = claim(ctx, n=10)  # the slot is free again: exactly one more
    assert nxt["run_id"] in capped and nxt["run_id"] != first["run_id"]


def test_a_multi_phase_claim_takes_no_more_than_the_cap_has_room_for(ctx: Context, wss: None) -> None:
    set_cap(ctx, "workspace", max_concurrent=2)
    for _ in range(5):
        run(ctx)
    assert len(claim(ctx, n=5)) == 2
    assert claim(ctx, n=5) == []


def test_concurrent_claims_cannot_both_take_the_last_slot(ctx: Context, wss: None) -> None:
    set_cap(ctx, "workspace", max_concurrent=1)
    for _ in range(8):
        run(ctx)
    got: list[dict[str, Any]] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        got.extend(claim(ctx, executor=f"w{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1


def test_chained_phases_are_not_handed_off_past_a_cap(ctx: Context, wss: None) -> None:
    set_cap(ctx, "workspace", max_concurrent=1)
    a = run(ctx, phases=2)
    [c] = claim(ctx)
    want = {"executor_id": "w1", "capabilities": ["noop"], "max_phases": 2}
    out = protocol.complete(ctx, EXECUTOR, a, c["lease_token"], {}, claim_next=want)
    assert [n["phase"] for n in out.get("next") or []] in ([], ["p1"])  # never more than the cap
    if not out.get("next"):
        [c2] = claim(ctx)
        assert c2["phase"] == "p1"


# --- fairness -----------------------------------------------------------------------------------

def test_a_flooding_workspace_does_not_starve_another(ctx: Context, wss: None, clock: Clock) -> None:
    flood = [run(ctx, workspace="alpha") for _ in range(40)]
    clock.advance(1)
    late = [run(ctx, workspace="beta", spec="batch") for _ in range(2)]
    started: list[str] = []
    for _ in range(6):  # one executor, one phase at a time, each finished before the next claim
        [c] = claim(ctx)
        started.append(c["run_id"])
        protocol.complete(ctx, EXECUTOR, c["run_id"], c["lease_token"], {})
    # both of beta's runs start within 4 claims although 40 of alpha's are older (FIFO: after 40)
    assert all(r in started[:4] for r in late), started
    assert started[0] == flood[0]  # within a workspace the order stays oldest first


def test_fair_share_counts_what_a_workspace_already_runs(ctx: Context, wss: None, clock: Clock) -> None:
    for _ in range(6):
        run(ctx, workspace="alpha")
    assert len(claim(ctx, n=3)) == 3  # alpha runs three (nobody else waits)
    clock.advance(1)
    b = [run(ctx, workspace="beta") for _ in range(3)]
    got = claim(ctx, n=3)
    assert [c["run_id"] for c in got] == b  # beta's first three rank before alpha's 4th-6th


# --- usage is derived: killed workers, cancels ----------------------------------------------------

def test_killed_workers_give_their_slots_back_when_the_reaper_expires_them(
        ctx: Context, wss: None, clock: Clock) -> None:
    cap = set_cap(ctx, "workspace", max_concurrent=3)
    ids = [run(ctx) for _ in range(5)]
    assert len(claim(ctx, n=5, executor="doomed")) == 3
    assert usage(ctx, cap["id"])["usage"]["concurrent"] == 3
    clock.advance(ctx.settings.lease_ttl_s + 1)  # the workers died: no heartbeat
    assert protocol.reap(ctx) == 3
    assert usage(ctx, cap["id"])["usage"]["concurrent"] == 0
    clock.advance(60)  # past the retry backoff
    got = claim(ctx, n=5)
    assert len(got) == 3
    runs.cancel_run(ctx, got[0]["run_id"], SYSTEM)
    assert usage(ctx, cap["id"])["usage"]["concurrent"] == 2  # a cancel frees its slot at once
    for r in ids:
        if runs.get_run(ctx, r, SYSTEM)["status"] in ("queued", "running"):
            runs.cancel_run(ctx, r, SYSTEM)
    assert usage(ctx, cap["id"])["usage"]["concurrent"] == 0


# --- the daily budget ---------------------------------------------------------------------------

def test_an_exhausted_budget_skips_work_until_the_next_day(ctx: Context, wss: None, clock: Clock) -> None:
    clock.now = clock.now.replace(hour=22, minute=0)
    cap = set_cap(ctx, "pipeline", "sales", runtime_s_per_day=100)
    first = run(ctx)
    other = run(ctx, spec="other")
    second = run(ctx)
    got = claim(ctx, n=2)  # first and other
    [c] = [c for c in got if c["run_id"] == first]
    work(ctx, clock, c, 150)
    protocol.complete(ctx, EXECUTOR, first, c["lease_token"], {})
    u = usage(ctx, cap["id"])
    assert u["usage"]["runtime_s_today"] == pytest.approx(150, abs=1) and "runtime_s_per_day" in u["throttled"]
    assert claim(ctx, n=5) == []  # the second run of the pipeline waits
    assert runs.get_run(ctx, other, SYSTEM)["status"] == "running"
    clock.now = (clock.now + timedelta(days=1)).replace(hour=0, minute=0, second=1)
    assert [c["run_id"] for c in claim(ctx, n=5)] == [second]
    assert usage(ctx, cap["id"])["usage"]["runtime_s_today"] < 5


def test_a_running_phase_counts_toward_todays_budget(ctx: Context, wss: None, clock: Clock) -> None:
    set_cap(ctx, "workspace", runtime_s_per_day=60)
    run(ctx)
    later = run(ctx)
    [c] = claim(ctx)
    work(ctx, clock, c, 61)
    assert claim(ctx) == []
    assert runs.get_run(ctx, later, SYSTEM)["status"] == "queued"


# --- the timeout cap ------------------------------------------------------------------------------

def test_the_timeout_cap_lowers_a_claimed_phases_timeout(ctx: Context, wss: None) -> None:
    set_cap(ctx, "capability", "noop", max_phase_timeout_s=60)
    long, short, none = run(ctx, timeout_s=3600), run(ctx, timeout_s=30), run(ctx)
    got = {c["run_id"]: c["timeout_s"] for c in claim(ctx, n=3)}
    assert got == {long: 60, short: 30, none: 60}
    assert runs.get_run(ctx, long, SYSTEM)["phases"][0]["timeout_s"] == 60  # the reaper's timeout too


# --- queue caps at enqueue --------------------------------------------------------------------------

def test_a_full_reject_queue_cap_refuses_with_the_cap_named(ctx: Context, wss: None) -> None:
    cap = set_cap(ctx, "pipeline", "sales", max_queued_runs=2)
    run(ctx), run(ctx)
    with pytest.raises(RateLimited) as e:
        run(ctx)
    assert e.value.code == "queue_cap" and e.value.details["cap_id"] == cap["id"]
    assert "pipeline sales" in e.value.message and e.value.details["retry_after_s"] > 0
    run(ctx, spec="other")  # another pipeline is not capped
    claim(ctx)  # one leaves the queue
    run(ctx)


def test_a_full_hold_queue_cap_accepts_and_holds_with_the_reason(ctx: Context, wss: None, clock: Clock) -> None:
    cap = set_cap(ctx, "workspace", max_queued_runs=1, queue_mode="hold")
    first = run(ctx)
    held = run(ctx)
    detail = runs.get_run(ctx, held, SYSTEM)
    assert detail["held"]["cap_id"] == cap["id"] and "max_queued_runs 1" in detail["held"]["reason"]
    assert detail["phases"][0]["status"] == "pending"
    assert any(e["type"] == "RUN_HELD" for e in runs.read_events(ctx, held, SYSTEM))
    assert usage(ctx, cap["id"])["usage"]["held_runs"] == 1
    [c] = claim(ctx, n=5)  # the held run is not in the queue
    assert c["run_id"] == first
    assert runs.get_run(ctx, first, SYSTEM)["held"] is None
    scheduler.tick(ctx)  # the queue has room: the held run is released
    assert runs.get_run(ctx, held, SYSTEM)["held"] is None
    [c2] = claim(ctx, n=5)
    assert c2["run_id"] == held
    assert any(e["type"] == "RUN_RELEASED" for e in runs.read_events(ctx, held, SYSTEM))


# --- bad values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("scope,value,limits,mode,field", [
    ("galaxy", None, {"max_concurrent": 1}, None, "scope"),
    ("workspace", "x", {"max_concurrent": 1}, None, "value"),
    ("pipeline", None, {"max_concurrent": 1}, None, "value"),
    ("pipeline", "a b;drop", {"max_concurrent": 1}, None, "value"),
    ("workspace", None, {}, None, "limits"),
    ("workspace", None, {"max_concurrent": -1}, None, "max_concurrent"),
    ("workspace", None, {"max_concurrent": 1.5}, None, "max_concurrent"),
    ("workspace", None, {"max_concurrent": "1"}, None, "max_concurrent"),
    ("workspace", None, {"max_concurrent": True}, None, "max_concurrent"),
    ("workspace", None, {"max_concurrent": 10**12}, None, "max_concurrent"),
    ("workspace", None, {"runtime_s_per_day": float("nan")}, None, "runtime_s_per_day"),
    ("workspace", None, {"runtime_s_per_day": float("inf")}, None, "runtime_s_per_day"),
    ("workspace", None, {"max_phase_timeout_s": 0}, None, "max_phase_timeout_s"),
    ("workspace", None, {"max_queued_runs": 1}, "later", "queue_mode"),
    ("executor", "w1", {"max_queued_runs": 1}, None, "max_queued_runs"),
    ("workspace", None, {"max_parallel": 1}, None, "max_parallel"),
])
def test_invalid_cap_values_are_clear_errors(ctx: Context, wss: None, scope: str, value: str | None,
                                             limits: dict[str, Any], mode: str | None, field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        caps.set_cap(ctx, SYSTEM, "alpha", scope, value, limits, mode)
    assert e.value.code == "invalid_cap" and e.value.details == {"field": field}, e.value.message
    assert caps.report(ctx, SYSTEM) == []


def test_setting_a_scope_again_replaces_its_cap_and_delete_removes_it(ctx: Context, wss: None) -> None:
    a = set_cap(ctx, "workspace", max_concurrent=1)
    b = set_cap(ctx, "workspace", max_concurrent=4, runtime_s_per_day=3600)
    assert a["id"] == b["id"] and b["max_concurrent"] == 4 and b["runtime_s_per_day"] == 3600
    caps.delete_cap(ctx, SYSTEM, b["id"])
    assert caps.report(ctx, SYSTEM) == []
