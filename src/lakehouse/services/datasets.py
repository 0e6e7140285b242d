"""The dataset registry: every table's logical name, owner, description, tags, location, format,
environment, and its freshness and quality status.

A table enters the registry in one of three ways:

* a pipeline publishes it — :func:`on_manifest` is called in the transaction that records a completed
  phase's manifest and registers each table the phase committed (origin ``pipeline``; the owner is the
  pipeline spec's ``owner``, else the run's creator), updating run, snapshot and rows on later publishes;
* an engineer registers an existing Iceberg table by its metadata file (:func:`register`, origin
  ``manual``): the table is added to the workspace's catalog (pyiceberg ``register_table``), so every
  engine sees it; the metadata file must lie inside the warehouse (nothing else is readable through
  the catalog);
* a table of the catalog that neither happened to is still listed (origin ``catalog``), and tagging or
  describing it registers it.

The logical name is ``layer.table`` (``gold.revenue_by_month``), unique per workspace and environment.
Freshness comes from the publish path's measure (:mod:`lakehouse.services.freshness`) against the
pipeline spec's SLO; quality from the data-quality results of the run that last published the table.
Reads need ``read`` in the workspace, changes ``catalog.write``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import LAYERS, catalog_for
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import datasets as store
from lakehouse.store import ops_reads
from lakehouse.store.types_public import Connection, RowMapping

ORIGINS = ("pipeline", "manual", "catalog")
MAX_TAGS = 32
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,62}$")
_NAME_RE = re.compile(r"^(bronze|silver|gold)\.([a-z_][a-z0-9_]{0,127})$")


# --- checks -----------------------------------------------------------------------------------------


def check_name(name: Any) -> tuple[str, str]:
    """(layer, table) of a logical name ``layer.table``."""
    m = _NAME_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise InvalidInput(f"a dataset name is layer.table with layer one of {', '.join(LAYERS)} and a lowercase "
                           f"table name, not {name!r}", code="invalid_dataset_name")
    return m.group(1), m.group(2)


def _env(env: Any) -> str:
    if env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    return str(env)


def check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput("tags must be a list of strings", code="invalid_tags")
    clean = sorted({t.strip().lower() for t in tags if t.strip()})
    bad = [t for t in clean if not _TAG_RE.match(t)]
    if bad:
        raise InvalidInput(f"a tag is 1-63 lowercase letters, digits, '_', '.', ':' or '-': {', '.join(bad)}",
                           code="invalid_tags")
    if len(clean) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", code="invalid_tags")
    return clean


def _text(value: Any, what: str, most: int) -> str:
    if not isinstance(value, str) or len(value) > most:
        raise InvalidInput(f"{what} must be a string of at most {most} characters", code="invalid")
    return value.strip()


# --- the publish hook -------------------------------------------------------------------------------


def on_manifest(conn: Connection, run: RowMapping, manifest: dict[str, Any], now: datetime) -> int:
    """Register or refresh each table a phase committed (an ``outputs`` entry with a ``snapshot_id``:
    what a publish writes); returns how many. Called in the transaction that records the phase's
    manifest (services/protocol.py ``_record_manifest``)."""
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):
        return 0
    spec = (run["input_manifest"] or {}).get("spec")
    owner = spec.get("owner") if isinstance(spec, dict) else None
    owner = owner or run["created_by"] or None
    n = 0
    for table, entry in sorted(outputs.items()):
        if not isinstance(entry, dict) or entry.get("snapshot_id") is None or not _NAME_RE.match(str(table)):
            continue
        rows = entry.get("rows")
        store.published(conn, workspace_id=run["workspace_id"], environment=run["environment"], name=table,
                        run_id=run["id"], snapshot_id=int(entry["snapshot_id"]),
                        rows=int(rows) if isinstance(rows, int) else None, owner=owner,
                        created_by=run["created_by"] or "system", now=now)
        n += 1
    return n


# --- reads ------------------------------------------------------------------------------------------


def _catalog_refs(ctx: Context, workspace: str, env: str | None) -> dict[tuple[str, str], lake_tables.TableRef]:
    refs = lake_tables.list_tables(catalog_for(ctx.settings), env=env, workspace=workspace)
    return {(r.env, r.sql_name): r for r in refs}


def _status(ctx: Context, conn: Connection, ws_id: int, env: str, name: str, run_id: str | None,
            slo: dict[str, Any], now: datetime) -> dict[str, Any]:
    from lakehouse.services.catalog_view import DEFAULT_SLO, freshness

    fresh = ops_reads.freshness_get(conn, ws_id, env, name)
    newest = fresh["newest_change_at"] if fresh is not None else None
    state = freshness(newest, slo.get(name, DEFAULT_SLO), now)
    fresh_out = {"state": state["state"] if newest is not None else "unknown", "newest_change_at": newest,
                 "age_s": state["age_s"], "slo_s": state["slo_s"]}
    quality: dict[str, Any] = {"state": "unknown", "checks": 0, "failed": 0, "run_id": run_id}
    if run_id:
        results = [r for r in ops_reads.dq_results(conn, run_id)
                   if not r.get("table") or r.get("table") in (name, name.split(".", 1)[1])]
        failed = sum(1 for r in results if r.get("passed") is False)
        if results:
            quality.update(state="failed" if failed else "passed", checks=len(results), failed=failed)
    return {"freshness": fresh_out, "quality": quality}


def _render(row: RowMapping | None, ref: lake_tables.TableRef | None, workspace: str, env: str, name: str
            ) -> dict[str, Any]:
    location = ref.metadata_location if ref is not None else (row["location"] if row is not None else "")
    out: dict[str, Any] = {
        "name": name, "workspace": workspace, "environment": env, "format": "iceberg",
        "location": lake_tables.table_location(location) if location else None, "metadata_location": location or None,
        "in_catalog": ref is not None, "owner": None, "description": "", "tags": [], "origin": "catalog",
        "last_run_id": None, "snapshot_id": None, "rows": None, "published_at": None, "created_by": None,
        "created_at": None, "updated_at": None}
    if ref is not None:
        out["identifier"] = ref.identifier
    if row is not None:
        out.update({k: row[k] for k in ("owner", "description", "origin", "last_run_id", "snapshot_id", "rows",
                                        "published_at", "created_by", "created_at", "updated_at")})
        out["tags"] = list(row["tags"] or [])
        out["format"] = row["format"]
    return out


def search(ctx: Context, principal: Principal, *, workspace: str = workspaces.DEFAULT, env: str | None = None,
           q: str | None = None, tag: str | None = None, owner: str | None = None,
           limit: int = 500) -> list[dict[str, Any]]:
    """Datasets of a workspace (registered ones and every other table of its catalog), filtered by a
    name/description substring, a tag and an owner, by environment and name, with their freshness and
    quality status."""
    principal.require(Action.READ)
    if env is not None:
        _env(env)
    if not 1 <= limit <= 5000:
        raise InvalidInput("limit must be between 1 and 5000", code="invalid")
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    refs = _catalog_refs(ctx, workspace, env)
    needle = (q or "").strip().lower()
    tag = tag.strip().lower() if tag else None
    from lakehouse.services.catalog_view import spec_index

    slo = spec_index(ctx.settings.pipelines_dir)["slo"]
    now = ctx.clock()
    out: list[dict[str, Any]] = []
    with ctx.db.read() as conn:
        rows = {(r["environment"], r["name"]): r
                for r in store.search(conn, principal.workspace_ids, workspace_id=ws_id, environment=env)}
        for key in sorted(set(rows) | set(refs)):
            row, ref = rows.get(key), refs.get(key)
            item = _render(row, ref, workspace, *key)
            if needle and needle not in item["name"] and needle not in (item["description"] or "").lower():
                continue
            if tag and tag not in item["tags"]:
                continue
            if owner and item["owner"] != owner:
                continue
            item.update(_status(ctx, conn, ws_id, key[0], key[1], item["last_run_id"], slo, now))
            out.append(item)
            if len(out) >= limit:
                break
    return out


def show(ctx: Context, principal: Principal, name: str, *, env: str = "dev",
         workspace: str = workspaces.DEFAULT) -> dict[str, Any]:
    """One dataset with its status and its catalog facts (current snapshot, snapshots, schema)."""
    principal.require(Action.READ)
    layer, table = check_name(name)
    _env(env)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    with ctx.db.read() as conn:
        row = store.get(conn, ws_id, env, name)
    catalog = catalog_for(ctx.settings)
    ref = None
    extra: dict[str, Any] = {}
    if lake_tables.table_exists(catalog, layer, env, table, workspace):
        tbl = lake_tables.load(catalog, layer, env, table, workspace)
        ref = lake_tables.TableRef(workspace, layer, env, table, tbl.metadata_location)
        snap = tbl.metadata.current_snapshot()
        extra = {"current_snapshot_id": snap.snapshot_id if snap is not None else None,
                 "snapshots": len(tbl.metadata.snapshots), "total_rows": lake_tables.row_count(tbl.metadata),
                 "schema": [{"name": f.name, "type": str(f.field_type), "required": f.required}
                            for f in tbl.schema().fields]}
    if row is None and ref is None:
        raise NotFound(f"dataset {name} not found in {workspace}/{env}", code="dataset_not_found")
    from lakehouse.services.catalog_view import spec_index

    out = _render(row, ref, workspace, env, name)
    with ctx.db.read() as conn:
        out.update(_status(ctx, conn, ws_id, env, name, out["last_run_id"],
                           spec_index(ctx.settings.pipelines_dir)["slo"], ctx.clock()))
    return {**out, **extra}


# --- changes ----------------------------------------------------------------------------------------


def _writable(ctx: Context, principal: Principal, workspace: str) -> int:
    principal.require(Action.CATALOG_WRITE)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(Action.CATALOG_WRITE, ws_id)
    return ws_id


def _inside_warehouse(ctx: Context, location: str) -> str:
    from lakehouse.lake.catalog import warehouse_uri

    if not isinstance(location, str) or not location.endswith(".metadata.json") or ".." in location.split("/"):
        raise InvalidInput("metadata_location must be the path or URI of an Iceberg *.metadata.json file",
                           code="invalid_metadata_location")
    root = warehouse_uri(ctx.settings.warehouse).rstrip("/") + "/"
    given = location if "://" in location else "file://" + location
    if not given.startswith(root) and not location.startswith(ctx.settings.warehouse.rstrip("/") + "/"):
        raise InvalidInput(f"the metadata file must lie inside the warehouse ({ctx.settings.warehouse})",
                           code="location_outside_warehouse")
    return location


def _read_metadata(catalog: Any, location: str) -> Any:
    from pyiceberg.io import load_file_io
    from pyiceberg.serializers import FromInputFile

    return FromInputFile.table_metadata(load_file_io(catalog.properties, location).new_input(location))


def register(ctx: Context, principal: Principal, name: str, metadata_location: str, *, env: str = "dev",
             workspace: str = workspaces.DEFAULT, owner: str | None = None, description: str = "",
             tags: list[str] | None = None) -> dict[str, Any]:
    """Register an existing Iceberg table by its metadata file under ``layer.table``: it is added to the
    workspace's catalog (unless the catalog already has that very table) and to the registry.
    ``dataset_exists`` (409) when the name is registered, ``table_exists`` (409) when the catalog has
    another table of that name."""
    ws_id = _writable(ctx, principal, workspace)
    layer, table = check_name(name)
    _env(env)
    location = _inside_warehouse(ctx, metadata_location)
    tag_list = check_tags(tags or [])
    owner = _text(owner, "owner", 100) or None if owner is not None else principal.name
    description = _text(description, "description", 10_000)
    with ctx.db.read() as conn:
        if store.get(conn, ws_id, env, name) is not None:
            raise Conflict(f"dataset {name} is already registered in {workspace}/{env}", code="dataset_exists")
    catalog = catalog_for(ctx.settings)
    ident = lake_tables.identifier(layer, env, table, workspace)
    if lake_tables.table_exists(catalog, layer, env, table, workspace):
        current = lake_tables.current_metadata_location(catalog, layer, env, table, workspace)
        if current != location:
            raise Conflict(f"the catalog already has a table {name} in {workspace}/{env} at {current}",
                           code="table_exists")
    else:
        lake_tables.ensure_namespaces(catalog, env, workspace)
        try:
            _read_metadata(catalog, location)  # before the catalog records anything
            catalog.register_table(ident, location)
        except Exception as exc:  # an unreadable or invalid metadata file
            raise InvalidInput(f"cannot register {location}: {type(exc).__name__}: {str(exc)[:300]}",
                               code="invalid_metadata_location") from None
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not store.insert(conn, workspace_id=ws_id, environment=env, name=name, location=location, origin="manual",
                            created_by=principal.name, now=now, owner=owner, description=description,
                            tags=tag_list):
            raise Conflict(f"dataset {name} is already registered in {workspace}/{env}", code="dataset_exists")
        audit.record(conn, now, principal, "dataset.register", "dataset", f"{env}/{name}", ws_id,
                     {"metadata_location": location})
    return show(ctx, principal, name, env=env, workspace=workspace)


def update(ctx: Context, principal: Principal, name: str, *, env: str = "dev", workspace: str = workspaces.DEFAULT,
           owner: str | None = None, description: str | None = None, tags: list[str] | None = None,
           add_tags: list[str] | None = None, remove_tags: list[str] | None = None) -> dict[str, Any]:
    """Change a dataset's owner, description or tags (``tags`` replaces them; ``add_tags`` /
    ``remove_tags`` edit them). A catalog table not yet registered is registered by this."""
    ws_id = _writable(ctx, principal, workspace)
    layer, table = check_name(name)
    _env(env)
    values: dict[str, Any] = {}
    if owner is not None:
        values["owner"] = _text(owner, "owner", 100) or None
    if description is not None:
        values["description"] = _text(description, "description", 10_000)
    add, remove = check_tags(add_tags or []), check_tags(remove_tags or [])
    replace = check_tags(tags) if tags is not None else None
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = store.get(conn, ws_id, env, name)
        if row is None:
            catalog = catalog_for(ctx.settings)
            if not lake_tables.table_exists(catalog, layer, env, table, workspace):
                raise NotFound(f"dataset {name} not found in {workspace}/{env}", code="dataset_not_found")
            location = lake_tables.current_metadata_location(catalog, layer, env, table, workspace)
            store.insert(conn, workspace_id=ws_id, environment=env, name=name, location=location or "",
                         origin="catalog", created_by=principal.name, now=now)
            row = store.get(conn, ws_id, env, name)
            assert row is not None
        current = replace if replace is not None else list(row["tags"] or [])
        merged = check_tags([t for t in {*current, *add} if t not in set(remove)])
        if replace is not None or add or remove:
            values["tags"] = merged
        store.update_meta(conn, row["id"], now, **values)
        audit.record(conn, now, principal, "dataset.update", "dataset", f"{env}/{name}", ws_id,
                     {k: v for k, v in values.items() if k != "description"})
    return show(ctx, principal, name, env=env, workspace=workspace)
