"""An engine's results become staged outputs exactly like a pipeline transform's
(``handlers/staging.py``): only after the engine finished, all of them, so that the ``publish`` phase
commits them (one atomic Iceberg commit per table) and a failed or killed engine publishes nothing."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lakehouse.handlers import staging
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseContext, PhaseError


def check_output(table: str) -> str:
    from lakehouse.lake.catalog import check_layer, check_table_name

    layer, _, name = str(table).partition(".")
    try:
        return f"{check_layer(layer)}.{check_table_name(name)}"
    except ValueError as exc:
        raise PhaseError(f"bad output table {table!r}: {exc}", retryable=False) from None


def stage_all(ctx: PhaseContext, settings: Settings, results: dict[str, tuple[pa.Table, list[str], dict[str, Any]]]
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stage every ``table → (rows, inputs, extra)``; returns the manifest's ``outputs`` and lineage
    ``edges``. If staging fails midway, what this call staged is removed again."""
    from lakehouse.lake.hashing import content_hash

    outputs: dict[str, Any] = {}
    edges: list[dict[str, Any]] = []
    written: list[str] = []
    try:
        for table, (data, inputs, extra) in sorted(results.items()):
            ctx.check()
            path = staging.write(settings, ctx, check_output(table), data)
            written.append(path)
            outputs[table] = staging.manifest_entry(path, data, content_hash(data), inputs=sorted(inputs), **extra)
            edges.append({"inputs": sorted(inputs), "outputs": [table]})
    except BaseException:
        discard(settings, written, ctx)
        raise
    return outputs, edges


def discard(settings: Settings, paths: list[str], ctx: PhaseContext | str = "") -> None:
    """Remove staged files, with the phase's storage credentials (``ctx``) when it has vended ones."""
    staging.delete(settings, ctx, paths)
