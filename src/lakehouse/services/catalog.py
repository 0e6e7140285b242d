"""Browsing the lake: namespaces, tables with their schema, snapshots, row counts and sample rows.

Namespaces are per workspace (see :mod:`lakehouse.lake.catalog`): a principal sees those of its
workspaces only; anything else is a 404.
"""

from __future__ import annotations

from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import LAYERS, catalog_for, namespace, parse_namespace
from lakehouse.services import workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.services.sql import jsonable

MAX_SAMPLE = 1000


def _env(env: str | None) -> str | None:
    if env is not None and env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    return env


def _layer(layer: str | None) -> str | None:
    if layer is not None and layer not in LAYERS:
        raise InvalidInput(f"layer must be one of {', '.join(LAYERS)}", code="invalid_layer")
    return layer


def list_namespaces(ctx: Context, principal: Principal, workspace: str = workspaces.DEFAULT
                    ) -> list[dict[str, Any]]:
    """Every layer x environment namespace of the workspace, with its table count."""
    workspaces.resolve_for(ctx, principal, workspace)
    counts: dict[tuple[str, str], int] = {}
    for ref in lake_tables.list_tables(catalog_for(ctx.settings), workspace=workspace):
        counts[(ref.layer, ref.env)] = counts.get((ref.layer, ref.env), 0) + 1
    return [{"namespace": namespace(layer, env, workspace), "layer": layer, "env": env, "schema": layer,
             "tables": counts.get((layer, env), 0)} for env in ENVIRONMENTS for layer in LAYERS]


def list_tables(ctx: Context, principal: Principal, env: str | None = None, layer: str | None = None,
                workspace: str = workspaces.DEFAULT) -> list[dict[str, Any]]:
    workspaces.resolve_for(ctx, principal, workspace)
    refs = lake_tables.list_tables(catalog_for(ctx.settings), env=_env(env), layer=_layer(layer),
                                   workspace=workspace)
    return [{"namespace": namespace(r.layer, r.env, r.workspace), "table": r.name, "layer": r.layer,
             "env": r.env, "sql_name": r.sql_name, "metadata_location": r.metadata_location} for r in refs]


def _resolve(ctx: Context, principal: Principal, ns: str, env: str | None, workspace: str | None
             ) -> tuple[str, str, str]:
    """(workspace, layer, env) of a namespace given as ``bronze_dev`` / ``acme__bronze_dev`` or as a
    bare layer (``bronze``) with ``env`` (default dev)."""
    if ns in LAYERS:
        parts_ws, layer, e = workspace or workspaces.DEFAULT, ns, _env(env) or "dev"
    else:
        parts = parse_namespace(ns)
        if parts is None:
            raise NotFound(f"namespace {ns!r} not found", code="namespace_not_found")
        if workspace and parts.workspace != workspace:
            raise NotFound(f"namespace {ns!r} not found in workspace {workspace!r}", code="namespace_not_found")
        if env and parts.env != env:
            raise InvalidInput(f"namespace {ns} is of environment {parts.env}, not {env}", code="invalid_environment")
        parts_ws, layer, e = parts.workspace, parts.layer, parts.env
    workspaces.resolve_for(ctx, principal, parts_ws)  # a foreign workspace is a 404
    return parts_ws, layer, e


def describe_table(ctx: Context, principal: Principal, ns: str, table: str, *, env: str | None = None,
                   workspace: str | None = None, sample: int = 10) -> dict[str, Any]:
    """Schema, snapshots (id, timestamp, operation, summary), row count and — for principals who may
    query — a few sample rows of one table."""
    if not 0 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample must be between 0 and {MAX_SAMPLE}", code="invalid")
    ws, layer, e = _resolve(ctx, principal, ns, env, workspace)
    catalog = catalog_for(ctx.settings)
    try:
        tbl = lake_tables.load(catalog, layer, e, table, ws)
    except (lake_tables.TableNotFound, ValueError):
        raise NotFound(f"table {layer}.{table} not found in {e}", code="table_not_found") from None
    md = tbl.metadata
    schema = tbl.schema()
    out: dict[str, Any] = {
        "namespace": namespace(layer, e, ws), "table": table, "layer": layer, "env": e, "workspace": ws,
        "sql_name": f"{layer}.{table}", "location": tbl.location(), "metadata_location": tbl.metadata_location,
        "format_version": md.format_version,
        "schema": [{"id": f.field_id, "name": f.name, "type": str(f.field_type), "required": f.required,
                    "doc": f.doc} for f in schema.fields],
        "partitioning": [{"source_id": pf.source_id, "name": pf.name, "transform": str(pf.transform)}
                         for pf in tbl.spec().fields],
        "current_snapshot_id": md.current_snapshot_id,
        "snapshots": lake_tables.snapshot_list(md),
        "row_count": lake_tables.row_count(md),
        "properties": dict(md.properties),
        "sample": None,
    }
    if sample and principal.can(Action.QUERY):
        rows = lake_tables.read_table(catalog, layer, e, table, limit=sample, workspace=ws)
        cols = [rows.column(i).to_pylist() for i in range(rows.num_columns)]
        out["sample"] = {"columns": rows.column_names,
                         "rows": [[jsonable(v) for v in r] for r in zip(*cols, strict=True)]}
    return out
