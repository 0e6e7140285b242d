"""The ``transform`` phase: the spec's SQL or Python transforms, in order, over the run's workspace and
environment in the DuckDB sandbox; outputs are staged for validate and publish."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from lakehouse.handlers import staging
from lakehouse.handlers.pipeline_common import (
    _catalog,
    _scope,
    _settings,
    _spec,
    _table,
)
from lakehouse.worker.context import PhaseContext, PhaseError

_REF = re.compile(r"\b(bronze|silver|gold)\s*\.\s*([a-z_][a-z0-9_]*)\b", re.IGNORECASE)

def references(sql: str) -> list[str]:
    return sorted({f"{a.lower()}.{b.lower()}" for a, b in _REF.findall(_strip_comments(sql))})


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def transform(ctx: PhaseContext) -> dict[str, Any]:
    """Run the spec's transforms in order over the lake (earlier outputs visible to later ones)."""
    import duckdb

    from lakehouse.lake import duck
    from lakehouse.lake.hashing import content_hash

    spec = _spec(ctx)
    sql_texts = ctx.input_manifest.get("sql") or {}
    params = ctx.input_manifest.get("params") or {}
    settings = _settings(ctx)
    ws = _scope(ctx)
    as_of = params.get("as_of") or ctx.input_manifest.get("as_of") or datetime.now(UTC).date().isoformat()
    outputs: dict[str, Any] = {}
    edges = []
    # the same sandbox as /api/sql: this run's workspace and environment only, no other file
    with duck.connect(_catalog(ctx), ctx.environment, workspace=ws, views=False, sandbox=True) as lake:
        lake.con.execute("SET VARIABLE as_of = ?::DATE", [str(as_of)])
        for i, t in enumerate(spec.get("transforms") or []):
            ctx.check()
            ctx.progress(f"{t['name']} ({i + 1}/{len(spec['transforms'])})", fraction=i / len(spec["transforms"]))
            if t.get("sql"):
                text = sql_texts.get(t["name"])
                if not text:
                    raise PhaseError(f"the run carries no SQL for transform {t['name']}", retryable=False)
                inputs = t.get("inputs") or references(text)
                try:
                    rel = lake.sql(text)
                    result = rel.to_arrow_table()
                except duckdb.Error as exc:
                    raise PhaseError(f"transform {t['name']} ({t['sql']}): {exc}", retryable=False) from None
            else:
                result, inputs = _python_transform(t, lake, params), list(t.get("inputs") or [])
            layer, name = _table(t["output"])
            view = f"__out_{layer}_{name}"
            lake.con.register(view, result)
            lake.con.execute(f'CREATE OR REPLACE VIEW {layer}."{name}" AS SELECT * FROM {view}')
            lake.views.add(t["output"])
            path = staging.write(settings, ctx, t["output"], result)
            outputs[t["output"]] = staging.manifest_entry(path, result, content_hash(result), inputs=inputs,
                                                          transform=t["name"])
            edges.append({"inputs": inputs, "outputs": [t["output"]]})
            ctx.log(f"{t['name']}: {result.num_rows} rows → {t['output']}", rows=result.num_rows)
    return {"outputs": outputs, "as_of": str(as_of), "edges": edges}


def _python_transform(t: dict[str, Any], lake: Any, params: dict[str, Any]) -> pa.Table:
    from lakehouse.handlers.python import load_callable

    fn = load_callable(t["python"])
    result = fn(lake.con, params)
    if not isinstance(result, pa.Table):
        raise PhaseError(f"{t['python']} must return a pyarrow.Table", retryable=False)
    return result


# --- validate -------------------------------------------------------------------------------------

