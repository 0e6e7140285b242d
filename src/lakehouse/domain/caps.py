"""Runtime caps as data: what a cap scopes, what it limits, and how a value is checked.

A cap belongs to one workspace and scopes the work of that workspace: all of it (``workspace``), the
runs of one pipeline or job (``pipeline``: the run's spec slug, which is a job's pipeline or the job
name), the phases needing one capability (``capability``), or the phases one executor runs
(``executor``). Usage is never stored: it is derived from the phases table where it is enforced.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lakehouse.domain.errors import InvalidInput


class ScopeKind(StrEnum):
    WORKSPACE = "workspace"
    PIPELINE = "pipeline"
    CAPABILITY = "capability"
    EXECUTOR = "executor"


class QueueMode(StrEnum):
    REJECT = "reject"  # over max_queued_runs: 429 with Retry-After, the cap named
    HOLD = "hold"  # over max_queued_runs: accepted, held out of the queue with the reason on the run


LIMITS = ("max_concurrent", "runtime_s_per_day", "max_phase_timeout_s", "max_queued_runs")
MAX_COUNT = 1_000_000  # concurrent phases or queued runs
MAX_SECONDS = 366 * 86_400.0  # a day's budget is at most a day per phase slot; a timeout at most a year
_VALUE = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")


@dataclass(frozen=True)
class CapSpec:
    """A cap as set: its scope and its limits (None: not limited)."""

    scope_kind: ScopeKind
    scope_value: str
    max_concurrent: int | None = None
    runtime_s_per_day: float | None = None
    max_phase_timeout_s: float | None = None
    max_queued_runs: int | None = None
    queue_mode: QueueMode = QueueMode.REJECT


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code="invalid_cap", details={"field": field})


def _count(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _bad(field, f"must be a whole number, not {str(value)[:40]!r}")
    if value < 0 or value > MAX_COUNT:
        raise _bad(field, f"must be between 0 and {MAX_COUNT}")
    return int(value)


def _seconds(field: str, value: Any, *, zero: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, f"must be a number of seconds, not {str(value)[:40]!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise _bad(field, "must be a finite number of seconds")
    if value < 0 or (value == 0 and not zero) or value > MAX_SECONDS:
        low = "0" if zero else "more than 0"
        raise _bad(field, f"must be {low} and at most {int(MAX_SECONDS)} seconds")
    return float(value)


def parse(scope_kind: Any, scope_value: Any, limits: dict[str, Any], queue_mode: Any = None) -> CapSpec:
    """Check a cap as asked for; raises ``InvalidInput`` (code ``invalid_cap``) naming the field."""
    try:
        kind = ScopeKind(scope_kind)
    except ValueError:
        raise _bad("scope", f"unknown scope {str(scope_kind)[:40]!r}; use one of "
                            f"{', '.join(k.value for k in ScopeKind)}") from None
    value = "" if scope_value is None else scope_value
    if not isinstance(value, str):
        raise _bad("value", "must be text")
    if kind is ScopeKind.WORKSPACE:
        if value:
            raise _bad("value", "a workspace cap names no value (it scopes the workspace it is set in)")
    elif not _VALUE.match(value):
        raise _bad("value", f"a {kind.value} cap needs a name of 1-200 letters, digits or _ . : @ / -")
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise _bad(unknown[0], f"unknown limit; use {', '.join(LIMITS)}")
    try:
        mode = QueueMode(queue_mode or QueueMode.REJECT.value)
    except ValueError:
        raise _bad("queue_mode", f"use {QueueMode.REJECT.value} (429) or {QueueMode.HOLD.value} "
                                 "(accept and hold)") from None
    spec = CapSpec(
        scope_kind=kind, scope_value=value,
        max_concurrent=_count("max_concurrent", limits.get("max_concurrent")),
        runtime_s_per_day=_seconds("runtime_s_per_day", limits.get("runtime_s_per_day"), zero=True),
        max_phase_timeout_s=_seconds("max_phase_timeout_s", limits.get("max_phase_timeout_s"), zero=False),
        max_queued_runs=_count("max_queued_runs", limits.get("max_queued_runs")),
        queue_mode=mode,
    )
    if kind is ScopeKind.EXECUTOR and spec.max_queued_runs is not None:
        raise _bad("max_queued_runs", "runs are not queued for an executor; cap its workspace, pipeline "
                                      "or capability instead")
    if all(getattr(spec, f) is None for f in LIMITS):
        raise _bad("limits", f"a cap sets at least one of {', '.join(LIMITS)}")
    return spec


def day_start(now: Any) -> Any:
    """The start of the UTC day of ``now``: daily budgets reset at 00:00 UTC."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
