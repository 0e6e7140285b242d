"""The catalog as the Control Room lists it: per table, where it is, how big, how fresh, who writes it.

Listing is one catalog query (:func:`lakehouse.services.catalog.list_tables`); the rest comes from each
table's metadata file, read once and cached by its location — a metadata file never changes, so the
cache is exact, and a write shows up as a new location. Freshness is judged against the SLO of the
pipeline spec that checks the table (a ``freshness`` check's ``max_age_hours``), else 24 h.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import catalog, workspaces
from lakehouse.services.context import Context

DEFAULT_SLO = timedelta(hours=24)
AGING = 0.75  # past this share of the SLO a table shows amber
_CACHE_SIZE = 2048
_lock = threading.Lock()
_meta_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_spec_cache: dict[str, Any] = {"key": None, "value": None}


def _metadata_summary(ctx: Context, ref: dict[str, Any]) -> dict[str, Any]:
    key = ref["metadata_location"]
    with _lock:
        hit = _meta_cache.get(key)
        if hit is not None:
            _meta_cache.move_to_end(key)
            return hit
    try:
        tbl = lake_tables.load(catalog_for(ctx.settings), ref["layer"], ref["env"], ref["table"],
                               ref.get("workspace") or workspaces.DEFAULT)
    except (lake_tables.TableNotFound, ValueError, OSError):
        return {"rows": None, "snapshots": 0, "last_written": None, "run_id": None, "pipeline": None,
                "git_sha": None, "partitioning": [], "columns": []}
    md = tbl.metadata
    snaps = lake_tables.snapshot_list(md)
    last = snaps[-1] if snaps else None
    summary = last["summary"] if last else {}
    out = {"rows": lake_tables.row_count(md) if snaps else 0, "snapshots": len(snaps),
           "last_written": last["timestamp"] if last else None, "run_id": summary.get("lakehouse.run_id"),
           "pipeline": summary.get("lakehouse.pipeline"), "git_sha": summary.get("lakehouse.git_sha"),
           "partitioning": [f"{pf.transform}({pf.name})" for pf in tbl.spec().fields],
           "columns": [{"name": f.name, "type": str(f.field_type)} for f in tbl.schema().fields]}
    with _lock:
        _meta_cache[key] = out
        while len(_meta_cache) > _CACHE_SIZE:
            _meta_cache.popitem(last=False)
    return out


def spec_index(folder: Path) -> dict[str, Any]:
    """From the pipeline specs: ``slo`` (table → max age) and ``owners`` / ``producers`` (table →
    the pipeline that writes it and its owner). Cached by the files' modification times."""
    from lakehouse.services import pipelines

    files = pipelines.discover([folder]) if folder.is_dir() else []
    key = tuple((str(p), p.stat().st_mtime_ns) for p in files)
    with _lock:
        if _spec_cache["key"] == key:
            return _spec_cache["value"]  # type: ignore[no-any-return]
    slo: dict[str, timedelta] = {}
    producers: dict[str, dict[str, Any]] = {}
    for path in files:
        loaded, _errors = pipelines.load(path)
        if loaded is None:
            continue
        spec = loaded.spec
        for check in spec.checks:
            if check.type == "freshness":
                age = timedelta(hours=check.max_age_hours)
                slo[check.table] = min(age, slo.get(check.table, age))
        written = [t.output for t in spec.transforms]
        if spec.ingest is not None:
            written += [f"bronze.{t}" for t in _ingest_tables(spec.ingest)]
        for table in written:
            producers.setdefault(table, {"pipeline": spec.name, "owner": spec.owner, "version": spec.version})
    value = {"slo": slo, "producers": producers}
    with _lock:
        _spec_cache.update(key=key, value=value)
    return value


def _ingest_tables(ingest: Any) -> list[str]:
    return [t for tables in ingest.groups.values() for t in tables]


def freshness(last: datetime | None, slo: timedelta, now: datetime) -> dict[str, Any]:
    """Age against the SLO: ``state`` fresh / aging / late, ``fill`` for a bar whose full width is
    1.5 times the SLO (the SLO mark sits at two thirds)."""
    slo_s = slo.total_seconds()
    if last is None:
        return {"state": "late", "age_s": None, "slo_s": slo_s, "fill": 100.0, "ratio": None}
    age = max(0.0, (now - last).total_seconds())
    ratio = age / slo_s
    state = "late" if ratio > 1 else ("aging" if ratio > AGING else "fresh")
    return {"state": state, "age_s": age, "slo_s": slo_s, "fill": min(100.0, 100 * ratio / 1.5), "ratio": ratio}


def list_tables(ctx: Context, principal: Principal, *, env: str | None = None, layer: str | None = None,
                q: str | None = None, state: str | None = None, pipeline: str | None = None,
                workspace: str = workspaces.DEFAULT) -> list[dict[str, Any]]:
    """Tables with layer, rows, last written, freshness against the SLO, producing pipeline and owner,
    location; filtered by a name search, a freshness state and a producing pipeline."""
    refs = catalog.list_tables(ctx, principal, env=env, layer=layer, workspace=workspace)
    needle = (q or "").strip().lower()
    index = spec_index(ctx.settings.pipelines_dir)
    now = ctx.clock()
    out = []
    for ref in refs:
        if needle and needle not in ref["sql_name"].lower():
            continue
        meta = _metadata_summary(ctx, {**ref, "workspace": workspace})
        produced = index["producers"].get(ref["sql_name"], {})
        slo = index["slo"].get(ref["sql_name"], DEFAULT_SLO)
        row = {**ref, **meta, "location": lake_tables.table_location(ref["metadata_location"]),
               "pipeline": meta["pipeline"] or produced.get("pipeline"), "owner": produced.get("owner"),
               "slo_from_spec": ref["sql_name"] in index["slo"], **freshness(meta["last_written"], slo, now)}
        if state and row["state"] != state:
            continue
        if pipeline and row["pipeline"] != pipeline:
            continue
        out.append(row)
    return out


def table_header(ctx: Context, principal: Principal, env: str, layer: str, table: str,
                 workspace: str = workspaces.DEFAULT) -> dict[str, Any] | None:
    """The summary row of one table (for the top of its page), or None."""
    rows = [r for r in list_tables(ctx, principal, env=env, layer=layer, workspace=workspace) if r["table"] == table]
    return rows[0] if rows else None


def completion_schema(ctx: Context, principal: Principal, env: str = "dev",
                      workspace: str = workspaces.DEFAULT) -> dict[str, list[str]]:
    """``{"gold.revenue": ["month", "amount"], …}``: what the SQL editor completes (schemas, tables,
    columns), from the cached metadata."""
    out: dict[str, list[str]] = {}
    for ref in catalog.list_tables(ctx, principal, env=env, workspace=workspace):
        meta = _metadata_summary(ctx, {**ref, "workspace": workspace})
        out[ref["sql_name"]] = [c["name"] for c in meta["columns"]]
    return out


def column_types(ctx: Context, principal: Principal, env: str = "dev",
                 workspace: str = workspaces.DEFAULT) -> list[dict[str, Any]]:
    """Tables with their typed columns, for the schema browser beside the editor."""
    out = []
    for ref in catalog.list_tables(ctx, principal, env=env, workspace=workspace):
        meta = _metadata_summary(ctx, {**ref, "workspace": workspace})
        out.append({"sql_name": ref["sql_name"], "layer": ref["layer"], "table": ref["table"],
                    "columns": meta["columns"], "rows": meta["rows"]})
    return out
