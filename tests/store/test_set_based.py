"""The set-based hot path (one statement for claim, one for complete + hand-off + next claims on
PostgreSQL; the per-item path on SQLite) keeps every guarantee: each phase runs once, every trail
is gapless and in order, the executor is touched, the notifications are sent."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import protocol, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import LeaseLost

EXECUTOR = Principal(name="robot", role="executor")


def req(n: int) -> RunRequest:
    return RunRequest(spec_slug="s", git_sha="g", phases=[PhaseSpec(name=f"p{i}", type="noop") for i in range(n)])


def trail(ctx: Context, run_id: str) -> list[dict[str, Any]]:
    return runs.read_events(ctx, run_id, SYSTEM)


def assert_gapless(ctx: Context, run_id: str) -> list[str]:
    events = trail(ctx, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return [e["type"] for e in events]


def test_workers_racing_over_chains_run_each_phase_once_with_gapless_trails(ctx: Context) -> None:
    run_ids = [runs.create_run(ctx, req(3), SYSTEM)[0]["run_id"] for _ in range(30)]
    executed: list[tuple[str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(name: str, batch: int) -> None:
        try:
            want = {"executor_id": name, "capabilities": ["noop"], "max_phases": batch}
            claims = protocol.claim(ctx, EXECUTOR, name, ["noop"], max_phases=batch)
            idle = 0
            while idle < 3:
                if not claims:
                    idle += 1
                    claims = protocol.claim(ctx, EXECUTOR, name, ["noop"], max_phases=batch)
                    continue
                idle = 0
                with lock:
                    executed.extend((c["run_id"], c["phase"]) for c in claims)
                items = [{"run_id": c["run_id"], "lease_token": c["lease_token"], "output_manifest": {"by": name},
                          "events": [{"event_id": f"{c['run_id']}-{c['phase']}", "type": "PHASE_LOG",
                                      "ts": c["lease_expires_at"], "level": "info", "message": "hi", "payload": {}}]}
                         for c in claims]
                if batch == 1:
                    it = items[0]
                    claims = protocol.complete(ctx, EXECUTOR, it["run_id"], it["lease_token"], it["output_manifest"],
                                               it["events"], claim_next=want)["next"]
                else:
                    out = protocol.complete_many(ctx, EXECUTOR, items, want)
                    assert all("error" not in r for r in out["results"])
                    claims = out["next"]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}", 1 + 3 * (i % 2))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(executed) == sorted((r, f"p{i}") for r in run_ids for i in range(3))
    for run_id in run_ids:
        types = assert_gapless(ctx, run_id)
        assert types[0] == "RUN_CREATED" and types[1] == "RUN_STARTED" and types[-1] == "RUN_SUCCEEDED"
        assert types.count("PHASE_SUCCEEDED") == 3 and types.count("PHASE_LOG") == 3
        assert runs.get_run(ctx, run_id, SYSTEM)["status"] == "succeeded"


def test_the_chain_hand_off_carries_every_previous_output(ctx: Context) -> None:
    run_id = runs.create_run(ctx, req(3), SYSTEM)[0]["run_id"]
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    want = {"executor_id": "w", "capabilities": ["noop"]}
    for i in range(2):
        [c] = protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], {"n": i}, claim_next=want)["next"]
        assert c["phase"] == f"p{i + 1}" and c["previous_outputs"] == {f"p{j}": {"n": j} for j in range(i + 1)}
    done = protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], {"outputs": {"b": {}, "a": {}}})
    assert done == {"run_status": "succeeded", "phase": "p2", "phase_status": "succeeded"}
    events = trail(ctx, run_id)
    assert events[-2]["payload"]["outputs"] == ["a", "b"] and events[-2]["message"].startswith("p2 succeeded in ")
    assert assert_gapless(ctx, run_id) == [
        "RUN_CREATED", "RUN_STARTED", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_SUCCEEDED",
        "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_SUCCEEDED", "PHASE_CLAIMED", "PHASE_STARTED", "PHASE_SUCCEEDED",
        "RUN_SUCCEEDED"]


def test_a_cached_manifest_is_not_sent_again(ctx: Context) -> None:
    a = runs.create_run(ctx, RunRequest(spec_slug="s", git_sha="g", phases=[PhaseSpec(name="p0", type="noop"),
                                        PhaseSpec(name="p1", type="noop")], input_manifest={"big": "x" * 100}),
                        SYSTEM)[0]["run_id"]
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"], cached=["other"])
    assert c["input_manifest"] == {"big": "x" * 100}
    want = {"executor_id": "w", "capabilities": ["noop"]}
    [c] = protocol.complete(ctx, EXECUTOR, a, c["lease_token"], {}, claim_next=want, cached=[a])["next"]
    assert c["input_manifest"] is None and c["phase"] == "p1"


def test_a_lost_lease_in_a_batch_claims_nothing_for_a_lone_item(ctx: Context) -> None:
    run_id = runs.create_run(ctx, req(1), SYSTEM)[0]["run_id"]
    runs.create_run(ctx, req(1), SYSTEM)
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    with pytest.raises(LeaseLost):
        protocol.complete(ctx, EXECUTOR, run_id, "stale", {}, claim_next={"executor_id": "w", "capabilities": ["noop"]})
    # nothing was leased behind the caller's back: the other run's phase is still claimable
    assert len(protocol.claim(ctx, EXECUTOR, "w2", ["noop"])) == 1
    protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], {})


def test_set_based_statements_send_their_notifications(ctx: Context) -> None:
    if ctx.db.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's")
    url = ctx.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("LISTEN lakehouse_ready")
        listener.execute("LISTEN lakehouse_events")
        run_id = runs.create_run(ctx, req(2), SYSTEM)[0]["run_id"]
        list(listener.notifies(timeout=0.5))
        [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
        got = {(n.channel, n.payload) for n in listener.notifies(timeout=0.5)}
        assert ("lakehouse_events", run_id) in got
        protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], {})  # p1 queued, not handed: wake others
        got = {(n.channel, n.payload) for n in listener.notifies(timeout=0.5)}
        assert ("lakehouse_events", run_id) in got and ("lakehouse_ready", "") in got


def test_a_wake_up_between_looking_for_work_and_waiting_is_not_lost() -> None:
    import asyncio

    from lakehouse.services.waker import Waker

    waker = Waker()

    async def scenario() -> bool:
        seen = waker.generation  # a long-poll reads it, then claims (finds nothing) ...
        waker.ready()            # ... work arrives before it starts waiting ...
        return await waker.wait_ready(30, since=seen)  # ... and it must not sleep 30 s

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) is True
