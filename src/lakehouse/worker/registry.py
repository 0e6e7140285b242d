"""Handlers are found through the ``lakehouse.handlers`` entry-point group; built-ins register the
same way third-party handlers do (pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from lakehouse.worker.context import PhaseContext
from lakehouse.worker.handler import Handler

__all__ = ["GROUP", "Handler", "load_handlers"]

GROUP = "lakehouse.handlers"


def load_handlers() -> dict[str, Handler]:
    handlers: dict[str, Handler] = {}
    for ep in entry_points(group=GROUP):
        handlers[ep.name] = _lazy(ep)
    return handlers


def _lazy(ep: Any) -> Handler:
    """Load the handler module on first use, so an optional engine's import cost and install hint
    come only when a phase of that type runs."""
    loaded: list[Handler] = []

    def call(ctx: PhaseContext) -> dict[str, Any] | None:
        if not loaded:
            loaded.append(ep.load())
        return loaded[0](ctx)

    call.__name__ = ep.name
    return call
