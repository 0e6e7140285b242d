"""The ``python`` phase type: calls ``module:function(params)`` and returns its manifest."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError


def run_python(ctx: PhaseContext) -> dict[str, Any]:
    target = ctx.params.get("callable")
    if not isinstance(target, str) or ":" not in target:
        raise PhaseError("params.callable must be 'module:function'", retryable=False)
    module_name, _, func_name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise PhaseError(f"cannot load {target}: {exc}", retryable=False) from None
    args = ctx.params.get("args", {})
    sig = inspect.signature(fn)
    result = fn(args, ctx) if len(sig.parameters) >= 2 else fn(args)
    if result is None:
        return {"outputs": {}}
    if not isinstance(result, dict):
        raise PhaseError(f"{target} returned {type(result).__name__}, not a manifest dict", retryable=False)
    return result
