"""Built-in handlers for tests and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError


def noop(ctx: PhaseContext) -> dict[str, Any]:
    return {"outputs": {}}


def sleep(ctx: PhaseContext) -> dict[str, Any]:
    """Sleep ``seconds`` (checking for cancellation); ``fail_attempts`` makes the first N attempts fail."""
    seconds = float(ctx.params.get("seconds", 0.0))
    if int(ctx.params.get("fail_attempts", 0)) >= ctx.attempt:
        raise PhaseError(f"failing attempt {ctx.attempt} on purpose", retryable=True)
    end = time.monotonic() + seconds
    step = min(0.05, seconds) if seconds > 0 else 0
    while (left := end - time.monotonic()) > 0:
        ctx.check()
        time.sleep(min(step, left))
        if seconds >= 1:
            ctx.progress(f"slept {seconds - left:.1f} of {seconds:.1f} s", fraction=(seconds - left) / seconds)
    return {"outputs": {}, "slept_s": seconds}
