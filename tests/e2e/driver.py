"""Drive a run through the real services and the real handlers, in this process (no HTTP): the real
phase runner (worker/runner.py) over the in-memory client (worker/inmemory.py), for fast data tests.
It claims only the driven run's phases; a retry in backoff is waited for, reaping as the server would."""

from __future__ import annotations

import time
from typing import Any

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.states import RUN_FINISHED
from lakehouse.services import protocol, runs
from lakehouse.services.context import Context
from lakehouse.worker.inmemory import InMemoryClient
from lakehouse.worker.registry import load_handlers
from lakehouse.worker.runner import PhaseRunner

HANDLERS = load_handlers()
EXECUTOR = Principal(name="test-driver", role="executor")


def drive(ctx: Context, run_id: str, max_steps: int = 100) -> dict[str, Any]:
    runner = PhaseRunner(InMemoryClient(ctx, EXECUTOR), executor_id="test-driver", handlers=HANDLERS,
                         wait_s=0, once=True, run_id=run_id)  # no settings: the handlers read the tests' env
    try:
        for _ in range(max_steps):
            run = runs.get_run(ctx, run_id, SYSTEM)
            if run["status"] in RUN_FINISHED:
                return run
            before = runner.done
            runner.run()  # every phase of the run that is runnable now, then back here
            if runner.done == before:
                protocol.reap(ctx)
                time.sleep(0.02)  # a retry in backoff (tests use a 10-50 ms backoff)
    finally:
        runner.close()
    raise AssertionError(f"run {run_id} did not finish in {max_steps} steps")
