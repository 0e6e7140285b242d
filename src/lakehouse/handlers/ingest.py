"""The ``ingest`` phase: one table group of a pipeline's source, read incrementally by watermark into a
staged bronze batch (with tombstones for rows deleted at the source and schema-drift checks)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from lakehouse.handlers import staging
from lakehouse.handlers.pipeline_common import (
    META_COLUMNS,
    _catalog,
    _scope,
    _settings,
    _spec,
    _table,
)
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseContext, PhaseError


def schema_drift(source: list[tuple[str, pa.DataType]], bronze: pa.Schema | None) -> dict[str, Any]:
    if bronze is None:
        return {"added": [], "removed": [], "retyped": []}
    from lakehouse.lake.hashing import type_category

    known = {f.name: type_category(f.type) for f in bronze if f.name not in META_COLUMNS}
    now = {name: type_category(t) for name, t in source}
    return {
        "added": sorted(set(now) - set(known)),
        "removed": sorted(set(known) - set(now)),
        "retyped": sorted(f"{c}: {known[c]} → {now[c]}" for c in set(now) & set(known) if now[c] != known[c]),
    }


def ingest(ctx: PhaseContext) -> dict[str, Any]:
    """Read one table group of the source (incrementally by watermark) into staged bronze batches."""
    import duckdb

    from lakehouse.connectors.sources import SourceError, SourceUnavailable, open_source
    from lakehouse.lake import tables as lake_tables
    from lakehouse.lake.hashing import content_hash

    spec = _spec(ctx)
    ing = spec.get("ingest") or {}
    group = ctx.params.get("group")
    tables = (ing.get("groups") or {}).get(group)
    if not tables:
        raise PhaseError(f"the spec has no table group {group!r}", retryable=False)
    source_spec = spec["sources"][ing["source"]]
    settings = _settings(ctx)
    ws = _scope(ctx)
    url = _source_url(ctx, settings, source_spec)
    catalog = _catalog(ctx)
    env = ctx.environment
    incremental = (ing.get("incremental") or {}).get("column")
    policy = (ing.get("schema_drift") or {}).get("policy", "allow_additive")
    marks_in = ctx.input_manifest.get("watermarks") or {}
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    outputs: dict[str, Any] = {}
    pending_marks: dict[str, Any] = {}
    try:
        source = open_source(url)
    except SourceUnavailable as exc:
        raise PhaseError(f"source unreachable: {exc}", retryable=True) from None
    except SourceError as exc:
        raise PhaseError(str(exc), retryable=False) from None
    con = duckdb.connect()
    try:
        for i, table in enumerate(tables):
            ctx.check()
            ctx.progress(f"{table} ({i + 1}/{len(tables)})", fraction=i / len(tables))
            try:
                src_schema = source.schema(table)
                _table(f"bronze.{table}")
                exists = lake_tables.table_exists(catalog, "bronze", env, table, ws)
                bronze_schema = lake_tables.load(catalog, "bronze", env, table, ws).schema().as_arrow() \
                    if exists else None
                drift = schema_drift(src_schema, bronze_schema)
                if any(drift.values()):
                    ctx.log(f"schema drift in {table}: {drift}", level="warning", type_="SCHEMA_DRIFT",
                            table=f"bronze.{table}", policy=policy, **drift)
                    breaking = drift["removed"] or drift["retyped"] if policy == "allow_additive" else \
                        any(drift.values()) if policy == "fail" else False
                    if breaking:
                        raise PhaseError(f"schema drift in {table} beyond policy {policy}: {drift}",
                                         retryable=False)
                mark = (marks_in.get(table) or {}).get("value") if incremental else None
                where = (incremental, _parse_mark(mark)) if incremental and mark else None
                data = source.read_table(table, where_watermark=where)
                new_mark = source.max_value(table, incremental) if incremental else None
                existing = None
                if exists:
                    cols = [c for c in ("id", incremental, "_loaded_at", "_deleted") if c]
                    existing = lake_tables.read_table(catalog, "bronze", env, table, columns=cols, workspace=ws)
                data, deleted = _dedupe_and_deletes(con, data, existing, incremental,
                                                    source.ids(table) if ing.get("detect_deletes") else None,
                                                    catalog, env, table, ws)
            except SourceError as exc:
                raise PhaseError(str(exc), retryable=False) from None
            except SourceUnavailable as exc:
                raise PhaseError(f"source unreachable: {exc}", retryable=True) from None
            batch = _with_meta(data, loaded_at, ctx.run_id, deleted)
            path = staging.write(settings, ctx, f"bronze.{table}", batch)
            outputs[f"bronze.{table}"] = staging.manifest_entry(
                path, batch, content_hash(batch, exclude=("_loaded_at", "_run_id")), deleted=deleted.num_rows
                if deleted is not None else 0, drift=drift, source=f"{ing['source']}.{table}")
            if incremental:
                value = new_mark.isoformat() if isinstance(new_mark, (datetime, date)) else new_mark
                pending_marks[table] = {"column": incremental, "value": value if value is not None else mark}
            ctx.log(f"staged {batch.num_rows} rows of {table}", rows=batch.num_rows, table=f"bronze.{table}")
    finally:
        con.close()
        source.close()
    return {"outputs": outputs, "pending_watermarks": pending_marks}


def _source_url(ctx: PhaseContext, settings: Settings, source_spec: dict[str, Any]) -> str:
    """The URL to read: a stored connection handed over for this lease (its secrets stay in memory), or
    the spec's URL checked like a connection (handlers/staging.py)."""
    name = source_spec.get("connection")
    if name:
        handed = ctx.leased_connection(str(name))
        if not handed.get("url"):
            raise PhaseError(f"connection {name} is a {handed.get('type')} connection, not a database source",
                             retryable=False)
        if staging.same_database(handed["url"], settings.database_url):
            raise PhaseError("a pipeline may not read the control plane's metadata database", retryable=False)
        return str(handed["url"])
    try:
        return staging.source_url(settings, source_spec["url"])
    except ValueError as exc:
        raise PhaseError(str(exc), retryable=False) from None


def _parse_mark(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _dedupe_and_deletes(con: Any, data: pa.Table, existing: pa.Table | None, incremental: str | None,
                        source_ids: pa.Array | None, catalog: Any, env: str, table: str, workspace: str
                        ) -> tuple[pa.Table, pa.Table | None]:
    """Drop rows bronze already holds as their latest version; find ids deleted at the source."""
    if existing is None or existing.num_rows == 0 or "id" not in data.column_names:
        return data, None
    con.register("incoming", data)
    con.register("existing", existing)
    try:
        latest = ("SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC) AS rn "
                  "FROM existing) WHERE rn = 1")
        if incremental:
            keep = con.execute(
                f"SELECT i.* FROM incoming i LEFT JOIN ({latest}) l ON l.id = i.id AND NOT l._deleted "
                f"AND l.{incremental} IS NOT DISTINCT FROM i.{incremental} WHERE l.id IS NULL ORDER BY i.id"
            ).to_arrow_table()
            data = keep.cast(data.schema) if keep.num_rows else data.slice(0, 0)
        deleted = None
        if source_ids is not None:
            con.register("src_ids", pa.table({"id": source_ids}))
            gone = con.execute(f"SELECT id FROM ({latest}) l WHERE NOT l._deleted AND l.id NOT IN "
                               "(SELECT id FROM src_ids) ORDER BY id").to_arrow_table()
            con.unregister("src_ids")
            if gone.num_rows:
                from lakehouse.lake import tables as lake_tables

                ids = ", ".join(str(int(x)) for x in gone.column("id").to_pylist())
                full = lake_tables.read_table(catalog, "bronze", env, table, row_filter=f"id IN ({ids})",
                                              workspace=workspace)
                con.register("gone_full", full)
                deleted = con.execute(
                    "SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY "
                    "_loaded_at DESC) AS rn FROM gone_full) WHERE rn = 1 ORDER BY id").to_arrow_table()
                con.unregister("gone_full")
                deleted = deleted.select([c for c in data.column_names if c in deleted.column_names])
        return data, deleted
    finally:
        con.unregister("incoming")
        con.unregister("existing")


def _with_meta(data: pa.Table, loaded_at: datetime, run_id: str, deleted: pa.Table | None) -> pa.Table:
    n = data.num_rows
    data = data.append_column("_loaded_at", pa.array([loaded_at] * n, pa.timestamp("us")))
    data = data.append_column("_deleted", pa.array([False] * n, pa.bool_()))
    data = data.append_column("_run_id", pa.array([run_id] * n, pa.string()))
    if deleted is not None and deleted.num_rows:
        m = deleted.num_rows
        tomb = deleted.drop_columns([c for c in META_COLUMNS if c in deleted.column_names])
        tomb = tomb.append_column("_loaded_at", pa.array([loaded_at] * m, pa.timestamp("us")))
        tomb = tomb.append_column("_deleted", pa.array([True] * m, pa.bool_()))
        tomb = tomb.append_column("_run_id", pa.array([run_id] * m, pa.string()))
        tomb = tomb.select(data.column_names).cast(data.schema, safe=False)
        data = pa.concat_tables([data, tomb])
    return data


# --- transform ------------------------------------------------------------------------------------

