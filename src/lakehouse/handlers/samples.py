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


def record_execution(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Append one line per execution to ``args['path']`` (O_APPEND, so concurrent workers do not
    interleave); tests count the lines to prove each phase ran exactly once."""
    import os

    line = f"{ctx.run_id} {ctx.phase} {ctx.attempt}\n".encode()
    fd = os.open(args["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return {"outputs": {}}
