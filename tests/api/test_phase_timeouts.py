"""Issue 8 (the worker's layer of the caps): a phase past its ``timeout_s`` is stopped by the worker
— its process group gets SIGTERM, then SIGKILL after ``phase_kill_grace_s`` — failed with the error
kind ``timeout`` (attempt ``timed_out``), and the worker's slot is free for the next claim.

Real child processes (engines/process.py ``run_child``), the real phase runner over the in-memory
client (and once over HTTP); the server's reaper is off, so the worker's own timeout is what acts."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lakehouse.api.app import create_app
from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.engines.process import run_child
from lakehouse.handlers.builtin import noop, sleep
from lakehouse.services import runs
from lakehouse.services.context import Context
from lakehouse.store.tables import phase_attempts, phases
from lakehouse.worker.context import PhaseContext
from lakehouse.worker.inmemory import InMemoryClient
from lakehouse.worker.loop import Worker
from lakehouse.worker.runner import PhaseRunner
from tests.api.test_worker_inprocess import executor_client

ROBOT = Principal(name="robot", role="executor")

# The child writes its pid and its own child's (a grandchild in the same process group that ignores
# SIGTERM) to ``pids``; on SIGTERM it notes ``term`` and then either exits or ignores it.
CHILD = r"""
import os, signal, subprocess, sys, time
from pathlib import Path
d, mode = Path(sys.argv[1]), sys.argv[2]
g = subprocess.Popen([sys.executable, "-c",
                      "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
def on_term(*_):
    (d / "term").write_text(mode)
    if mode == "exit":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(d / "pids").write_text(f"{os.getpid()} {g.pid}")
while True:
    time.sleep(0.05)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def child_phase(ctx: PhaseContext) -> dict[str, Any]:
    run_child(ctx, [sys.executable, "-c", CHILD, ctx.params["dir"], ctx.params["mode"]], ctx.workdir / "child.log")
    return {"outputs": {}}


def run_of(ctx: Context, type_: str, timeout_s: float | None = None, **params: Any) -> str:
    phase = PhaseSpec(name="p", type=type_, params=params, max_attempts=1,
                      **({"timeout_s": timeout_s} if timeout_s else {}))
    return str(runs.create_run(ctx, RunRequest(spec_slug="timeouts", git_sha="g", phases=[phase]), SYSTEM)[0]["run_id"])


def attempt_statuses(ctx: Context, run_id: str) -> list[str]:
    with ctx.db.read() as conn:
        return [r[0] for r in conn.execute(
            select(phase_attempts.c.status).join(phases, phases.c.id == phase_attempts.c.phase_id)
            .where(phases.c.run_id == run_id).order_by(phase_attempts.c.attempt))]


@pytest.fixture
def grace(ctx: Context) -> Context:
    ctx.settings = ctx.settings.model_copy(update={"phase_kill_grace_s": 0.5})
    return ctx


def runner(ctx: Context, handlers: dict[str, Callable[[PhaseContext], dict[str, Any] | None]]) -> PhaseRunner:
    return PhaseRunner(InMemoryClient(ctx, ROBOT), executor_id="timeouts", handlers=handlers, wait_s=0,
                       once=True, settings=ctx.settings)


@pytest.mark.parametrize("mode", ["ignore", "exit"])
def test_a_child_process_past_its_timeout_is_stopped_and_the_phase_fails_with_timeout(
        grace: Context, tmp_path: Path, mode: str) -> None:
    """``ignore``: the child ignores SIGTERM, so only the SIGKILL after the grace ends it; ``exit``:
    it exits on SIGTERM. Either way no process of the group is left, the attempt is ``timed_out``,
    and the same worker goes on to the next run (its slot is free)."""
    ctx = grace
    slow = run_of(ctx, "child", timeout_s=3.0, dir=str(tmp_path), mode=mode)
    after = run_of(ctx, "noop")
    r = runner(ctx, {"child": child_phase, "noop": noop})
    try:
        r.run()
    finally:
        r.close()
    child, grandchild = (int(x) for x in (tmp_path / "pids").read_text().split())
    assert (tmp_path / "term").read_text() == mode  # SIGTERM came first
    assert not alive(child) and not alive(grandchild)  # the grandchild ignores SIGTERM: SIGKILL reached it
    failed = runs.get_run(ctx, slow, SYSTEM)
    assert failed["status"] == "failed" and "timed out after 3 s" in failed["phases"][0]["error"]
    assert attempt_statuses(ctx, slow) == ["timed_out"]
    assert runs.get_run(ctx, after, SYSTEM)["status"] == "succeeded" and r.done == 1


def stubborn(ctx: PhaseContext) -> dict[str, Any]:
    """Never calls ctx.check(): only the interrupt raised in its thread stops it."""
    while True:
        time.sleep(0.02)


@pytest.mark.parametrize("blocking", [False, True], ids=["interrupted", "abandoned"])
def test_an_in_thread_handler_past_its_timeout_is_interrupted_or_abandoned_and_the_slot_freed(
        ctx: Context, blocking: bool) -> None:
    """A handler that never calls ``ctx.check()`` gets :class:`PhaseCancelled` raised in its thread;
    one blocked in a read no interrupt reaches is abandoned. The phase fails with ``timeout`` and
    the next run starts either way."""
    ctx.settings = ctx.settings.model_copy(update={"phase_kill_grace_s": 0.0})
    read_end, write_end = os.pipe()

    def blocked(ctx: PhaseContext) -> dict[str, Any]:
        os.read(read_end, 1)  # blocks in C until the test writes to the pipe
        return {"outputs": {}}

    slow = run_of(ctx, "slow", timeout_s=0.3)
    after = run_of(ctx, "noop")
    r = runner(ctx, {"slow": blocked if blocking else stubborn, "noop": noop})
    try:
        r.run()
    finally:
        os.write(write_end, b"x")
        r.close()
    abandoned = 1 if blocking else 0
    assert r.abandoned == abandoned
    failed = runs.get_run(ctx, slow, SYSTEM)
    assert failed["status"] == "failed" and "timed out" in failed["phases"][0]["error"]
    assert attempt_statuses(ctx, slow) == ["timed_out"]
    assert runs.get_run(ctx, after, SYSTEM)["status"] == "succeeded" and r.done == 1


def test_no_timeout_runs_the_handler_to_its_end(ctx: Context) -> None:
    rid = run_of(ctx, "sleep", seconds=0.2)
    r = runner(ctx, {"sleep": sleep})
    try:
        r.run()
    finally:
        r.close()
    assert runs.get_run(ctx, rid, SYSTEM)["status"] == "succeeded"
    assert attempt_statuses(ctx, rid) == ["succeeded"]


@pytest.fixture
def server(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, reaper=False)) as c:
        yield c


def test_over_http_the_timeout_kind_reaches_the_server(server: TestClient, ctx: Context,
                                                         executor_token: str) -> None:
    """The HTTP client sends ``kind: timeout`` on fail: the attempt is ``timed_out``, not ``failed``."""
    rid = run_of(ctx, "sleep", timeout_s=0.3, seconds=30)
    worker = Worker(executor_client(server, executor_token), executor_id="http-timeouts",
                    handlers={"sleep": sleep}, once=True, wait_s=0, settings=ctx.settings)
    worker.run()
    worker.close()
    assert runs.get_run(ctx, rid, SYSTEM)["status"] == "failed"
    assert attempt_statuses(ctx, rid) == ["timed_out"]
