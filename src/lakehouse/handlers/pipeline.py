"""The phases of a pipeline run: ingest → transform → validate → publish.

Ingest and transform stage their outputs (Parquet under the warehouse's ``_staging/<run_id>/``);
validate runs the data-quality checks on what is staged; publish commits each staged table to
Iceberg in one atomic commit and declares the new watermarks and lineage in its output manifest,
which the control plane records in the transaction that marks the publish succeeded. A failed
phase therefore never changes a published table, and readers see the old snapshot until publish.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from lakehouse.handlers import dq, staging
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseContext, PhaseError

META_COLUMNS = ("_loaded_at", "_deleted", "_run_id")
_REF = re.compile(r"\b(bronze|silver|gold)\s*\.\s*([a-z_][a-z0-9_]*)\b", re.IGNORECASE)


def _settings() -> Settings:
    return Settings()


def _catalog(settings: Settings) -> Any:
    from lakehouse.lake.catalog import catalog_for

    return catalog_for(settings)


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
    run's staging folder gives the table: a manifest cannot point a phase at any other file."""
    out: dict[str, dict[str, Any]] = {}
    for manifest in ctx.previous_outputs.values():
        for table, entry in ((manifest or {}).get("outputs") or {}).items():
            if isinstance(entry, dict) and entry.get("staged"):
                _table(table)
                if entry["staged"] != staging.staged_path(settings, ctx.run_id, table):
                    raise PhaseError(f"staged file of {table} is outside this run's staging folder",
                                     retryable=False)
                out[table] = entry
    return out


# --- ingest ---------------------------------------------------------------------------------------

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
    settings = _settings()
    ws = _scope(ctx)
    url = _source_url(ctx, settings, source_spec)
    catalog = _catalog(settings)
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
            path = staging.write(settings, ctx.run_id, f"bronze.{table}", batch)
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
        if ctx.client is None:
            raise PhaseError("a connection by name needs the control plane", retryable=False)
        from lakehouse.worker.client import ContractError, LeaseLostError

        try:
            handed = ctx.client.lease_connection(ctx.run_id, ctx.lease_token, str(name))
        except LeaseLostError:
            raise
        except ContractError as exc:
            raise PhaseError(f"connection {name}: {exc.code}: {exc.message}", retryable=exc.status >= 500) from None
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
    settings = _settings()
    ws = _scope(ctx)
    as_of = params.get("as_of") or ctx.input_manifest.get("as_of") or datetime.now(UTC).date().isoformat()
    outputs: dict[str, Any] = {}
    edges = []
    # the same sandbox as /api/sql: this run's workspace and environment only, no other file
    with duck.connect(_catalog(settings), ctx.environment, workspace=ws, views=False, sandbox=True) as lake:
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
            path = staging.write(settings, ctx.run_id, t["output"], result)
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

def validate(ctx: PhaseContext) -> dict[str, Any]:
    """Run the spec's checks on the staged outputs (published tables for what is not staged)."""
    import duckdb

    from lakehouse.lake import tables as lake_tables

    spec = _spec(ctx)
    settings = _settings()
    ws = _scope(ctx)
    catalog = _catalog(settings)
    staged = _staged(ctx, settings)
    data: dict[str, pa.Table] = {}
    published: dict[str, int | None] = {}
    for table in sorted({c["table"] for c in spec.get("checks") or []} |
                        {c["to"] for c in spec.get("checks") or [] if c.get("to")}):
        layer, name = _table(table)
        exists = lake_tables.table_exists(catalog, layer, ctx.environment, name, ws)
        published[table] = lake_tables.row_count(
            lake_tables.load(catalog, layer, ctx.environment, name, ws).metadata) if exists else None
        if table in staged:
            data[table] = staging.read(settings, staged[table]["staged"])
        elif exists:
            data[table] = lake_tables.read_table(catalog, layer, ctx.environment, name, workspace=ws)
    results = []
    con = duckdb.connect()
    try:
        for check in spec.get("checks") or []:
            ctx.check()
            r = dq.run_check(con, check, data, published)
            if check["type"] == "row_count" and check["table"].startswith("bronze.") and check["table"] in staged:
                grown = {check["table"]: _grown(data[check["table"]], published.get(check["table"]))}
                r = dq.run_check(con, check, grown, published)
            results.append(r)
            ctx.log(f"{'✔' if r['passed'] else '✖'} {r['type']} on {r['table']}: {r['message']}",
                    level="info" if r["passed"] else ("error" if r["severity"] == "error" else "warning"),
                    type_="DQ_RESULT", result=r)
    finally:
        con.close()
    for table, entry in sorted(staged.items()):
        drift = entry.get("drift") or {}
        if any(drift.values()):  # drift within policy (beyond it, ingest already failed)
            changes = "; ".join(f"{k}: {', '.join(v)}" for k, v in drift.items() if v)
            r = {"table": table, "type": "schema_drift", "severity": "warn", "passed": True, "observed": drift,
                 "message": f"schema changed at the source, allowed by the drift policy ({changes})", "check": {}}
            results.append(r)
            ctx.log(f"✔ schema_drift on {table}: {r['message']}", level="warning", type_="DQ_RESULT", result=r)
    path = ctx.workdir / "dq_results.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    if ctx.client is not None:
        ctx.add_artifact("dq_results.json", path, "application/json",
                         {"checks": len(results), "failed": sum(not r["passed"] for r in results)})
    blocking = [r for r in results if not r["passed"] and r["severity"] == "error"]
    if blocking:
        summary = "; ".join(f"{r['type']} on {r['table']}: {r['message']}" for r in blocking[:5])
        raise PhaseError(f"{len(blocking)} blocking data-quality check(s) failed: {summary}", retryable=False)
    return {"outputs": {}, "dq": {"checks": len(results), "passed": sum(r["passed"] for r in results),
                                  "warnings": sum(not r["passed"] for r in results)}}


def _grown(batch: pa.Table, published: int | None) -> pa.Table:
    """A stand-in with the row count bronze will have after the append (row-count checks on bronze
    judge the table, not the increment)."""
    total = batch.num_rows + (published or 0)
    return pa.table({"n": pa.nulls(total, pa.int8())})


# --- publish --------------------------------------------------------------------------------------

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

    settings = _settings()
    ws = _scope(ctx)
    catalog = _catalog(settings)
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
            data = staging.read(settings, entry["staged"])
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
    staging.clear(settings, ctx.run_id)
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
