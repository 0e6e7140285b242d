"""The ``python`` phase type: calls ``module:function(params)`` and returns its manifest.

Only functions an admin registered may run: modules under a prefix of ``LAKEHOUSE_PYTHON_MODULES``
(default ``lakehouse.handlers.samples``), or functions published in the ``lakehouse.python``
entry-point group of an installed package. The control plane refuses any other callable when the
run is created (``services/code_policy.py``); the worker checks again before importing anything.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError

ENTRY_POINT_GROUP = "lakehouse.python"


@functools.cache  # scanning every installed distribution costs ~10-150 ms: once per process, not per phase
def registered_functions() -> dict[str, str]:
    """Entry points of the ``lakehouse.python`` group: name → ``module:function``."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def is_allowed(target: str, module_prefixes: Iterable[str]) -> bool:
    """Whether ``module:function`` (or a registered entry-point name) may run."""
    registered = registered_functions()
    if target in registered or target in registered.values():
        return True
    module, sep, func = target.partition(":")
    if not sep or not module or not func or func.startswith("_"):
        return False
    return any(module == p or module.startswith(p + ".") for p in module_prefixes if p)


def load_callable(target: str, module_prefixes: Iterable[str] | None = None) -> Callable[..., Any]:
    """Import an allowed callable; :class:`PhaseError` (not retryable) for anything else."""
    if module_prefixes is None:
        from lakehouse.settings import Settings

        module_prefixes = Settings().python_modules
    if not isinstance(target, str) or not is_allowed(target, module_prefixes):
        raise PhaseError(f"python callable {target!r} is not registered by an admin "
                         "(LAKEHOUSE_PYTHON_MODULES or the lakehouse.python entry points)", retryable=False)
    target = registered_functions().get(target, target)
    module_name, _, func_name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise PhaseError(f"cannot load {target}: {exc}", retryable=False) from None
    if not callable(fn):
        raise PhaseError(f"{target} is not callable", retryable=False)
    return fn  # type: ignore[no-any-return]


def run_python(ctx: PhaseContext) -> dict[str, Any]:
    target = ctx.params.get("callable")
    if not isinstance(target, str) or (":" not in target and target not in registered_functions()):
        raise PhaseError("params.callable must be 'module:function'", retryable=False)
    # the worker's settings, built once at its edge (a Settings() here cost ~40 % of a worker's CPU
    # on lightweight phases); a handler called without them reads the environment
    fn = load_callable(target, getattr(ctx.settings, "python_modules", None))
    args = ctx.params.get("args", {})
    sig = inspect.signature(fn)
    result = fn(args, ctx) if len(sig.parameters) >= 2 else fn(args)
    if result is None:
        return {"outputs": {}}
    if not isinstance(result, dict):
        raise PhaseError(f"{target} returned {type(result).__name__}, not a manifest dict", retryable=False)
    return result
