"""What the pipeline phases share: the run's scope (from the claim), checked table names, the spec and
the staged outputs of earlier phases. The phases themselves: handlers/ingest.py, transform.py,
validate.py, publish.py (docs/handlers.md)."""

from __future__ import annotations

import re
from typing import Any

from lakehouse.handlers import staging
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseContext, PhaseError

META_COLUMNS = ("_loaded_at", "_deleted", "_run_id")
_REF = re.compile(r"\b(bronze|silver|gold)\s*\.\s*([a-z_][a-z0-9_]*)\b", re.IGNORECASE)


def _settings(ctx: PhaseContext | None = None) -> Settings:
    """The worker's settings, passed down in the phase context (built from the environment only when a
    caller gave none, e.g. a handler called directly)."""
    if ctx is not None and isinstance(ctx.settings, Settings):
        return ctx.settings
    return Settings()


def _catalog(ctx: PhaseContext) -> Any:
    """The phase's catalog, from its context (a worker's: the REST catalog under this lease)."""
    return ctx.catalog


def _scope(ctx: PhaseContext) -> str:
    """The run's workspace, as the server's claim names it (never from params or the manifest)."""
    from lakehouse.lake.catalog import check_env, check_workspace

    try:
        check_env(ctx.environment)
        return check_workspace(ctx.workspace)
    except ValueError as exc:
        raise PhaseError(f"bad run scope: {exc}", retryable=False) from None


def _table(ref: str) -> tuple[str, str]:
    """``layer.name`` of a table the spec names, checked (a layer of this lake, a plain table name)."""
    from lakehouse.lake.catalog import check_layer, check_table_name

    layer, _, name = str(ref).partition(".")
    try:
        return check_layer(layer), check_table_name(name)
    except ValueError as exc:
        raise PhaseError(f"bad table {ref!r}: {exc}", retryable=False) from None


def _spec(ctx: PhaseContext) -> dict[str, Any]:
    spec = ctx.input_manifest.get("spec")
    if not isinstance(spec, dict):
        raise PhaseError("this run has no pipeline spec in its input manifest", retryable=False)
    return spec


def _staged(ctx: PhaseContext, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every table staged by the run's earlier phases, by SQL name. A staged path must be the one this
    run's staging folder gives the table (``_staging/<workspace>/<env>/<run_id>/``, the scope from the
    claim; or ``_staging/<run_id>/`` of runs staged before per-workspace staging): a manifest cannot
    point a phase at any other file."""
    out: dict[str, dict[str, Any]] = {}
    for manifest in ctx.previous_outputs.values():
        for table, entry in ((manifest or {}).get("outputs") or {}).items():
            if isinstance(entry, dict) and entry.get("staged"):
                _table(table)
                if entry["staged"] not in (staging.staged_path(settings, ctx, table),
                                           staging.legacy_path(settings, ctx.run_id, table)):
                    raise PhaseError(f"staged file of {table} is outside this run's staging folder",
                                     retryable=False)
                out[table] = entry
    return out


# --- ingest ---------------------------------------------------------------------------------------

