"""The real worker loop against the real app in this process (TestClient as its HTTP connection):
the worker-side lease bugs of issue 13, and cross-process wake-ups on SQLite."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.handlers.builtin import noop, sleep
from lakehouse.services import executors, runs
from lakehouse.services.context import Context, open_context
from lakehouse.worker.client import ExecutorClient
from lakehouse.worker.context import PhaseContext, PhaseError
from lakehouse.worker.contract import ContractError, LeaseLostError
from lakehouse.worker.inmemory import InMemoryClient
from lakehouse.worker.loop import Worker
from lakehouse.worker.runner import PhaseRunner


@pytest.fixture
def fast_leases(ctx: Context) -> Context:
    ctx.settings = ctx.settings.model_copy(update={"lease_ttl_s": 1.5, "reaper_interval_s": 0.1,
                                                   "claim_start_timeout_s": 1.5})
    return ctx


@pytest.fixture
def server(fast_leases: Context) -> Iterator[TestClient]:
    with TestClient(create_app(fast_leases, reaper=True)) as c:
        yield c


def executor_client(http: TestClient, token: str) -> ExecutorClient:
    client = ExecutorClient("http://testserver", token)
    client.http.close()
    http.headers["Authorization"] = f"Bearer {token}"
    client.http = cast(httpx.Client, http)  # a TestClient (httpx2) speaks the same API
    return client


def run_of(ctx: Context, *phases: dict[str, Any]) -> str:
    req = RunRequest(spec_slug="worker", git_sha="g", phases=[PhaseSpec(**p) for p in phases])
    return str(runs.create_run(ctx, req, SYSTEM)[0]["run_id"])


def trail(ctx: Context, run_id: str) -> list[dict[str, Any]]:
    return runs.read_events(ctx, run_id, SYSTEM)


def test_batched_claim_of_phases_longer_than_the_lease_runs_each_once(
        server: TestClient, fast_leases: Context, executor_token: str) -> None:
    """``--max-phases 4``: four 0.8 s phases with a 1.5 s lease. The waiting phases' leases used to
    expire (only the running phase was heartbeated), get requeued and run twice."""
    ctx = fast_leases
    ids = [run_of(ctx, {"name": "slow", "type": "sleep", "params": {"seconds": 0.8}}) for _ in range(4)]
    worker = Worker(executor_client(server, executor_token), executor_id="batcher", handlers={"sleep": sleep},
                    max_phases=4, once=True, wait_s=0)
    worker.run()
    for rid in ids:
        kinds = collections.Counter(e["type"] for e in trail(ctx, rid))
        assert kinds["PHASE_STARTED"] == 1 and kinds["LEASE_EXPIRED"] == 0, kinds
        run = runs.get_run(ctx, rid, SYSTEM)
        assert run["status"] == "succeeded" and run["phases"][0]["attempt"] == 1
    assert worker.done == 4


def bad_watermark(ctx: PhaseContext) -> dict[str, Any]:
    return {"outputs": {}, "watermarks": {"odoo.account_move": "not an object"}}


def bad_lineage(ctx: PhaseContext) -> dict[str, Any]:
    return {"outputs": {}, "lineage": {"inputs": ["no dots here"], "outputs": ["silver.x"]}}


def nul_byte(ctx: PhaseContext) -> dict[str, Any]:
    return {"outputs": {"silver.x": {"note": "a\x00b"}}}


@pytest.mark.parametrize("handler, field", [
    (bad_watermark, "watermarks.odoo.account_move"), (bad_lineage, "lineage.inputs[0]"),
    (nul_byte, "outputs.silver.x.note")], ids=["watermark", "lineage", "nul"])
@pytest.mark.parametrize("max_phases", [1, 3])
def test_a_refused_completion_fails_the_phase_not_the_worker(
        server: TestClient, fast_leases: Context, executor_token: str, handler: Any, field: str,
        max_phases: int) -> None:
    """A 4xx other than 409 answering ``complete`` used to escape the loop and kill the process; the
    next worker then crashed on the same phase. Now the phase fails with the server's message and
    the worker goes on to the next run."""
    ctx = fast_leases
    bad = run_of(ctx, {"name": "bad", "type": "bad"}, {"name": "after", "type": "noop"})
    good = run_of(ctx, {"name": "fine", "type": "noop"})
    worker = Worker(executor_client(server, executor_token), executor_id="steady",
                    handlers={"bad": handler, "noop": noop}, max_phases=max_phases, once=True, wait_s=0)
    worker.run()
    failed = runs.get_run(ctx, bad, SYSTEM)
    assert failed["status"] == "failed" and failed["phases"][0]["attempt"] == 1
    assert "invalid_manifest" in failed["phases"][0]["error"] and field in failed["phases"][0]["error"]
    assert [p["status"] for p in failed["phases"]] == ["failed", "skipped"]
    assert runs.get_run(ctx, good, SYSTEM)["status"] == "succeeded"


def test_complete_with_a_malformed_watermark_is_422_naming_the_field(
        server: TestClient, fast_leases: Context, executor_token: str) -> None:
    rid = run_of(fast_leases, {"name": "p", "type": "noop"})
    auth = {"Authorization": f"Bearer {executor_token}"}
    claim = server.post("/ops/claim", json={"executor_id": "w", "capabilities": ["noop"]}, headers=auth).json()
    for manifest, field in (({"watermarks": {"t.x": 5}}, "output_manifest.watermarks.t.x"),
                            ({"outputs": {"k": "\x00"}}, "output_manifest.outputs.k")):
        r = server.post(f"/ops/runs/{rid}/complete", headers=auth,
                        json={"lease_token": claim["lease_token"], "output_manifest": manifest})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_manifest"
        assert r.json()["error"]["details"] == {"field": field}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_work_created_by_another_process_wakes_a_long_poll(ctx: Context, executor_token: str) -> None:
    """On SQLite the waker only reached long-polls of the process that created the work: a run
    started by the CLI (``pipelines run``) sat queued until the poll timed out. The server now
    watches the database's change counter."""
    with TestClient(create_app(ctx, reaper=False)) as http:
        answer: dict[str, Any] = {}

        def long_poll() -> None:
            r = http.post("/ops/claim", json={"executor_id": "w", "capabilities": ["noop"], "wait_s": 60},
                          headers={"Authorization": f"Bearer {executor_token}"})
            answer["status"], answer["body"] = r.status_code, r.json() if r.status_code == 200 else None

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.3)  # let the poll find nothing and start waiting
        other = open_context(ctx.settings)  # another process: its own engine and its own waker
        try:
            rid = runs.create_run(other, RunRequest(spec_slug="cli", git_sha="g", phases=[
                PhaseSpec(name="p", type="noop")]), SYSTEM)[0]["run_id"]
        finally:
            other.db.dispose()
        poller.join(timeout=30)  # a liveness bound, far below the poll's 60 s
        assert not poller.is_alive(), "the long-poll was not woken by the other process's run"
        assert answer["status"] == 200 and answer["body"]["run_id"] == rid


# --- the worker seam (issue 12 item 4): the runner over the in-memory client ----------------------

ROBOT = Principal(name="robot", role="executor")


def logs_and_fails(ctx: PhaseContext) -> dict[str, Any]:
    ctx.log("about to fail", rows=3)
    raise PhaseError("no rows today", retryable=False)


def logs_and_succeeds(ctx: PhaseContext) -> dict[str, Any]:
    ctx.log("all good")
    return {"outputs": {"n": ctx.params["n"]}}


@pytest.mark.parametrize("max_phases", [1, 3])
def test_the_phase_runner_runs_real_phases_over_the_in_memory_client(ctx: Context, max_phases: int) -> None:
    """No HTTP: claims, events, completions with the next claim, failures and the batched path all
    go through the services; the outcomes are the ones the HTTP worker gets."""
    good = [run_of(ctx, {"name": "a", "type": "ok", "params": {"n": i}}, {"name": "b", "type": "noop"})
            for i in range(4)]
    bad = run_of(ctx, {"name": "a", "type": "bad", "max_attempts": 3}, {"name": "b", "type": "noop"})
    runner = PhaseRunner(InMemoryClient(ctx, ROBOT), executor_id="seam", max_phases=max_phases, wait_s=0,
                         once=True, handlers={"ok": logs_and_succeeds, "bad": logs_and_fails, "noop": noop})
    try:
        runner.run()
    finally:
        runner.close()
    for i, rid in enumerate(good):
        run = runs.get_run(ctx, rid, SYSTEM)
        assert run["status"] == "succeeded" and run["phases"][0]["output_manifest"] == {"outputs": {"n": i}}
        assert "all good" in [e["message"] for e in trail(ctx, rid)]
    failed = runs.get_run(ctx, bad, SYSTEM)
    assert failed["status"] == "failed" and failed["phases"][0]["attempt"] == 1  # not retryable
    assert failed["phases"][0]["error"] == "no rows today"
    assert "about to fail" in [e["message"] for e in trail(ctx, bad)]
    assert runner.done == 8


def test_the_in_memory_client_answers_refusals_as_the_http_client_does(ctx: Context) -> None:
    client = InMemoryClient(ctx, ROBOT)
    rid = run_of(ctx, {"name": "p", "type": "noop"})
    with pytest.raises(LeaseLostError) as lost:
        client.complete(rid, "not-a-lease", {})
    assert lost.value.status == 409 and lost.value.code == "lease_lost"
    with pytest.raises(ContractError) as missing:
        client.get_run("0" * 36)
    assert missing.value.status == 404 and missing.value.code == "run_not_found"
    viewer = InMemoryClient(ctx, Principal(name="v", role="viewer"))
    with pytest.raises(ContractError) as forbidden:
        viewer.claim("w", ["noop"])
    assert forbidden.value.status == 403


# --- issue 11 item 5: a worker that stops cleanly says so -----------------------------------------

def states(http: TestClient, token: str) -> dict[str, dict[str, Any]]:
    rows = http.get("/ops/executors", headers={"Authorization": f"Bearer {token}"}).json()["executors"]
    return {r["executor_id"]: r for r in rows}


def test_a_worker_that_ends_its_once_run_is_listed_as_stopped_then_online_again(
        server: TestClient, fast_leases: Context, executor_token: str) -> None:
    run_of(fast_leases, {"name": "p", "type": "noop"})
    worker = Worker(executor_client(server, executor_token), executor_id="polite", handlers={"noop": noop},
                    once=True, wait_s=0)
    worker.run()
    worker.close()
    row = states(server, executor_token)["polite"]
    assert row["state"] == "stopped" and row["stopped"] and not row["stale"]
    assert row["stop_reason"] == "no work left"
    # it calls again: online, the goodbye forgotten
    server.post("/ops/claim", json={"executor_id": "polite", "capabilities": ["noop"]},
                headers={"Authorization": f"Bearer {executor_token}"})
    assert states(server, executor_token)["polite"]["state"] == "online"


def test_sigterm_while_waiting_for_work_stops_the_worker_and_it_says_so(ctx: Context) -> None:
    """The signal handler of ``lakehouse worker``: SIGTERM during a long-poll ends it at once and the
    registry shows the executor stopped by SIGTERM (in this process, over the in-memory client)."""
    worker = Worker(InMemoryClient(ctx, ROBOT), executor_id="sigterm-me", handlers={"noop": noop}, wait_s=60)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def terminate_once_registered() -> None:
        for _ in range(600):
            if any(r["executor_id"] == "sigterm-me" for r in executors.list_executors(ctx, SYSTEM)):
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    worker.install_signals()
    killer = threading.Thread(target=terminate_once_registered)
    try:
        killer.start()
        worker.run()
    finally:
        killer.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
        worker.close()
    row = next(r for r in executors.list_executors(ctx, SYSTEM) if r["executor_id"] == "sigterm-me")
    assert row["state"] == "stopped" and row["stop_reason"] == "stopped by SIGTERM"
