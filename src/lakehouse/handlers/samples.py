"""Sample Python phase functions used by the demo and the tests."""

from __future__ import annotations

from typing import Any


def row_check(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Check that the previous SQL phase produced at least ``min_rows`` rows."""
    from lakehouse.worker.context import PhaseError

    rows = 0
    for manifest in ctx.previous_outputs.values():
        result = (manifest or {}).get("outputs", {}).get("result")
        if result:
            rows = result["rows"]
    if rows < int(args.get("min_rows", 1)):
        raise PhaseError(f"expected at least {args.get('min_rows')} rows, got {rows}", retryable=False)
    ctx.log(f"row check passed: {rows} rows", rows=rows)
    return {"outputs": {}, "checked_rows": rows}
