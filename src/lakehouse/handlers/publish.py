"""The ``publish`` phase: every staged table committed to Iceberg (one atomic commit each, in the job's
write mode), and the new watermarks and lineage declared in the output manifest."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lakehouse.handlers import staging
from lakehouse.handlers.pipeline_common import (
    _catalog,
    _scope,
    _settings,
    _staged,
    _table,
)
from lakehouse.worker.context import PhaseContext, PhaseError


def _write_mode(ctx: PhaseContext, table: str, layer: str) -> tuple[str, list[str]]:
    """How a staged table is written: the mode the run's manifest records for it (``write``: sql jobs'
    overwrite | append | merge with its keys), else append for bronze and overwrite above it."""
    entry = (ctx.input_manifest.get("write") or {}).get(table)
    if not isinstance(entry, dict):
        return ("append" if layer == "bronze" else "overwrite"), []
    mode, keys = entry.get("mode", "overwrite"), entry.get("keys") or []
    if mode not in ("overwrite", "append", "merge") or not isinstance(keys, list) or \
            not all(isinstance(k, str) and k for k in keys) or (mode == "merge" and not keys):
        raise PhaseError(f"bad write mode for {table}: {entry!r}", retryable=False)
    return mode, keys


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def merged(existing: pa.Table | None, new: pa.Table, keys: list[str], table: str) -> pa.Table:
    """The content of ``table`` after merging ``new`` into ``existing`` on ``keys``: rows of ``new``
    replace the rows with the same keys (NULL keys match NULL keys), the others stay; computed in
    DuckDB (pyiceberg's upsert is far slower), then published with one overwrite."""
    import duckdb

    missing = [k for k in keys if k not in new.column_names]
    if missing:
        raise PhaseError(f"merge keys {', '.join(missing)} are not columns of the rows for {table}", retryable=False)
    con = duckdb.connect()
    try:
        con.register("__new", new)
        cols = ", ".join(_ident(k) for k in keys)
        found = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM __new GROUP BY ALL HAVING count(*) > 1)"
                            ).fetchone()
        dupes = int(found[0]) if found else 0
        if dupes:
            raise PhaseError(f"merge keys ({', '.join(keys)}) are not unique in the new rows of {table}: "
                             f"{dupes} key(s) repeat", retryable=False)
        if existing is None or existing.num_rows == 0:
            return new
        gone = [k for k in keys if k not in existing.column_names]
        if gone:
            raise PhaseError(f"merge keys {', '.join(gone)} are not columns of {table}", retryable=False)
        con.register("__old", existing)
        match = " AND ".join(f"o.{_ident(k)} IS NOT DISTINCT FROM n.{_ident(k)}" for k in keys)
        result = con.execute(f"SELECT o.* FROM __old o WHERE NOT EXISTS (SELECT 1 FROM __new n WHERE {match}) "
                             "UNION ALL BY NAME SELECT * FROM __new").to_arrow_table()
        return result
    finally:
        con.close()


def publish(ctx: PhaseContext) -> dict[str, Any]:
    """Commit every staged table (one atomic Iceberg commit each) and declare watermarks and lineage."""
    from lakehouse.lake import tables as lake_tables

    settings = _settings(ctx)
    ws = _scope(ctx)
    catalog = _catalog(ctx)
    staged = _staged(ctx, settings)
    order = {"bronze": 0, "silver": 1, "gold": 2}
    outputs: dict[str, Any] = {}
    props = {"lakehouse.run_id": ctx.run_id, "lakehouse.git_sha": ctx.git_sha, "lakehouse.pipeline": ctx.spec_slug}
    for i, table in enumerate(sorted(staged, key=lambda t: (order[t.split(".")[0]], t))):
        ctx.check()
        ctx.progress(f"committing {table}", fraction=i / max(len(staged), 1))
        entry = staged[table]
        layer, name = _table(table)
        mode, keys = _write_mode(ctx, table, layer)
        committed = _already_committed(catalog, layer, ctx.environment, name, ctx.run_id, ws)
        if committed is None:
            data = staging.read(settings, entry["staged"], ctx)
            if mode == "merge":
                exists = lake_tables.table_exists(catalog, layer, ctx.environment, name, ws)
                old = lake_tables.read_table(catalog, layer, ctx.environment, name, workspace=ws) if exists else None
                data = merged(old, data, keys, table)
            result = lake_tables.write_table(catalog, layer, ctx.environment, name, data,
                                             mode="append" if mode == "append" else "overwrite",
                                             snapshot_properties=props, workspace=ws)
            snapshot_id, rows = result.snapshot_id, result.rows
        else:
            snapshot_id, rows = committed, entry["rows"]
        outputs[table] = {"snapshot_id": snapshot_id, "rows": rows, "content_hash": entry["content_hash"],
                          "mode": mode}
        ctx.log(f"committed {table} snapshot {snapshot_id} ({mode})", table=table, snapshot_id=snapshot_id,
                rows=rows, mode=mode)
    marks: dict[str, Any] = {}
    edges = []
    for manifest in ctx.previous_outputs.values():
        marks.update((manifest or {}).get("pending_watermarks") or {})
        for table, entry in ((manifest or {}).get("outputs") or {}).items():
            if entry.get("source"):
                edges.append({"inputs": [entry["source"]], "outputs": [table]})
        edges += (manifest or {}).get("edges") or []
    staging.clear(settings, ctx)
    return {"outputs": outputs, "watermarks": marks, "lineage": {"edges": edges,
                                                                 "outputs": sorted(outputs)}}


def _already_committed(catalog: Any, layer: str, env: str, name: str, run_id: str, workspace: str) -> int | None:
    """The snapshot this run already committed to the table (a retried publish must not append twice)."""
    from lakehouse.lake import tables as lake_tables

    if not lake_tables.table_exists(catalog, layer, env, name, workspace):
        return None
    snap = lake_tables.load(catalog, layer, env, name, workspace).metadata.current_snapshot()
    if snap is not None and snap.summary is not None and \
            snap.summary.additional_properties.get("lakehouse.run_id") == run_id:
        return int(snap.snapshot_id)
    return None
