"""The handler interface: what a phase type implements and what it may use.

A handler is a callable ``handler(ctx: PhaseContext) -> dict | None`` registered in the
``lakehouse.handlers`` entry-point group (docs/handlers.md). It returns the phase's output manifest,
raises :class:`PhaseError` to fail the phase (``retryable=False``: no further attempt) and calls
``ctx.check()`` in long loops, which raises :class:`PhaseCancelled` once the phase must stop (run
cancelled, lease lost, phase timed out). A handler that runs child processes starts them with
:func:`lakehouse.engines.process.run_child`, so a stop reaches their whole process group. The
runner (worker/runner.py) uses only the public side of the context: it builds it, drains its
events and progress, and sets its cancellation."""

from __future__ import annotations

from typing import Any, Protocol

from lakehouse.worker.context import PhaseCancelled, PhaseContext, PhaseError


class Handler(Protocol):
    def __call__(self, ctx: PhaseContext, /) -> dict[str, Any] | None: ...


__all__ = ["Handler", "PhaseCancelled", "PhaseContext", "PhaseError"]
