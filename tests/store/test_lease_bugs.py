"""The queue's lease bugs of issue 13, each a test that failed before the fix (SQLite and PostgreSQL).

The worker-side halves (a batched claim heartbeated, a refused completion failing the phase) are in
tests/api/test_worker_inprocess.py; these pin the server side.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import protocol, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from tests.clock_support import Clock

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

EXECUTOR = Principal(name="robot", role="executor")


def one_phase(timeout_s: float | None = None, **kw: Any) -> RunRequest:
    return RunRequest(spec_slug="spec", git_sha="abc123",
                      phases=[PhaseSpec(name="p0", type="noop", timeout_s=timeout_s, **kw)])


def test_reaper_times_out_phases_past_the_first_100(ctx: Context) -> None:
    """150 running phases with a timeout; the 100 oldest have not timed out, the 50 newest have. The
    reaper used to page the first 100 (by id) and compare elapsed time in Python: it found none."""
    clock = Clock(START)
    ctx.clock = clock
    ctx.settings = ctx.settings.model_copy(update={"lease_ttl_s": 3600.0})
    ids = [runs.create_run(ctx, one_phase(3600 if i < 100 else 10), SYSTEM)[0]["run_id"] for i in range(150)]
    claimed = protocol.claim(ctx, EXECUTOR, "w", ["noop"], max_phases=100)
    claimed += protocol.claim(ctx, EXECUTOR, "w", ["noop"], max_phases=100)
    assert len(claimed) == 150
    clock.advance(60)
    assert protocol.reap(ctx) == 50
    status = {rid: runs.get_run(ctx, rid, SYSTEM)["phases"][0] for rid in ids}
    assert all(status[rid]["status"] == "running" for rid in ids[:100])
    late = [status[rid] for rid in ids[100:]]
    assert all(p["status"] == "queued" and "timed out" in (p["error"] or "") for p in late)


def test_heartbeat_many_extends_every_lease_and_answers_each(ctx: Context) -> None:
    clock = Clock(START)
    ctx.clock = clock
    a = runs.create_run(ctx, one_phase(), SYSTEM)[0]["run_id"]
    b = runs.create_run(ctx, one_phase(), SYSTEM)[0]["run_id"]
    ca, cb = sorted(protocol.claim(ctx, EXECUTOR, "batcher", ["noop"], max_phases=2), key=lambda c: c["run_id"] != a)
    clock.advance(20)
    out = protocol.heartbeat_many(ctx, EXECUTOR, [
        {"run_id": a, "lease_token": ca["lease_token"], "progress": {"message": "half"}},
        {"run_id": b, "lease_token": cb["lease_token"]},
        {"run_id": b, "lease_token": "stale"}])["results"]
    assert [r["run_id"] for r in out] == [a, b, b]
    assert out[0]["lease_expires_at"] == clock.now + timedelta(seconds=ctx.settings.lease_ttl_s)
    assert out[1]["status"] == "running" and out[2]["error"]["code"] == "lease_lost"
    clock.advance(20)  # 40 s after the claim: past the first lease, within the extended one
    assert protocol.reap(ctx) == 0
    protocol.complete(ctx, EXECUTOR, a, ca["lease_token"], {})
    protocol.complete(ctx, EXECUTOR, b, cb["lease_token"], {})


@pytest.mark.parametrize("manifest, field", [
    ({"watermarks": {"odoo.account_move": "2026-01-01"}}, "output_manifest.watermarks.odoo.account_move"),
    ({"watermarks": {"odoo.account_move": {"value": 3}}}, "output_manifest.watermarks.odoo.account_move"),
    ({"watermarks": ["odoo.account_move"]}, "output_manifest.watermarks"),
    ({"lineage": {"inputs": ["not dotted"], "outputs": ["silver.x"]}}, "output_manifest.lineage.inputs[0]"),
    ({"lineage": {"edges": [{"inputs": ["a.b"], "outputs": [7]}]}}, "output_manifest.lineage.edges[0].outputs[0]"),
    ({"outputs": {"silver.x": {"note": "nul\x00byte"}}}, "output_manifest.outputs.silver.x.note"),
], ids=["watermark-not-object", "watermark-no-column", "watermarks-not-object", "lineage-not-dotted",
        "lineage-not-a-string", "nul-byte"])
def test_malformed_manifest_is_refused_naming_the_field(ctx: Context, manifest: dict[str, Any], field: str) -> None:
    """A manifest the control plane cannot record is InvalidInput (422) naming the field, before
    anything is written; the lease is still held, so the executor can fail the phase."""
    run_id = runs.create_run(ctx, RunRequest(spec_slug="spec", git_sha="abc123", phases=[
        PhaseSpec(name="p0", type="noop"), PhaseSpec(name="p1", type="noop")]), SYSTEM)[0]["run_id"]
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    with pytest.raises(InvalidInput) as refused:
        protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], manifest,
                          claim_next={"executor_id": "w", "capabilities": ["noop"]})
    assert refused.value.code == "invalid_manifest" and refused.value.details == {"field": field}
    assert runs.get_run(ctx, run_id, SYSTEM)["phases"][0]["status"] == "running"
    out = protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], refused.value.message, retryable=False)
    assert out["run_status"] == "failed"


def test_a_nul_byte_in_an_executor_event_is_refused_naming_the_field(ctx: Context) -> None:
    run_id = runs.create_run(ctx, one_phase(), SYSTEM)[0]["run_id"]
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    ev = {"event_id": "e1", "type": "PHASE_LOG", "ts": datetime.now(UTC), "level": "info",
          "message": "a\x00b", "payload": {}}
    with pytest.raises(InvalidInput) as refused:
        protocol.heartbeat(ctx, EXECUTOR, run_id, c["lease_token"], events=[ev])
    assert refused.value.details == {"field": "events[0].message"}
    protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], "nul \x00 in the error text is kept", retryable=False)
    assert "\x00" not in (runs.get_run(ctx, run_id, SYSTEM)["error"] or "")


def test_a_retry_wakes_claim_waiters_when_its_backoff_ends(ctx: Context) -> None:
    """Nothing used to wake a long-poll when a backoff ended: the retry waited for the poll's timeout
    (or the reaper's next round). Now the process that requeued it schedules the wake."""
    ctx.settings = ctx.settings.model_copy(update={"retry_base_s": 0.3, "retry_max_s": 0.3})
    run_id = runs.create_run(ctx, one_phase(max_attempts=2), SYSTEM)[0]["run_id"]
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])

    async def scenario() -> bool:
        out = await asyncio.to_thread(protocol.fail, ctx, EXECUTOR, run_id, c["lease_token"], "flaky")
        assert out["requeued"]
        assert protocol.claim(ctx, EXECUTOR, "w", ["noop"]) == []  # still in backoff
        return await ctx.waker.wait_ready(20.0)  # the backoff's end wakes it (not this timeout)

    assert asyncio.run(scenario())
    [again] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    assert again["attempt"] == 2
