"""Lineage edges: upserted per workspace and environment; the graph walks up- and downstream."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.services import lineage, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.store.tables import lineage_edges


def _record(ctx: Context, run: str, phase: str, inputs: list[str], outputs: list[str], env: str = "dev",
            workspace: str = "default") -> int:
    return lineage.record(ctx, SYSTEM, env, run, phase, inputs, outputs, workspace)


def _ids(nodes: list[dict[str, Any]], role: str) -> list[str]:
    return [n["id"] for n in nodes if n["role"] == role]


def test_graph_walks_upstream_and_downstream_transitively(ctx: Context) -> None:
    _record(ctx, "r1", "ingest", ["odoo.account_move"], ["bronze.account_move"])
    _record(ctx, "r1", "ingest", ["odoo.res_partner"], ["bronze.res_partner"])
    _record(ctx, "r2", "transform", ["bronze.account_move", "bronze.res_partner"], ["silver.invoices"])
    _record(ctx, "r3", "transform", ["silver.invoices"], ["gold.revenue_monthly", "gold.ar_aging"])
    _record(ctx, "r3", "transform", ["gold.ar_aging"], ["gold.ar_summary"])
    _record(ctx, "r4", "transform", ["bronze.unrelated"], ["silver.other"])

    g = lineage.graph(ctx, SYSTEM, "Silver.Invoices", "dev")
    assert g["table"] == "silver.invoices"
    assert sorted(_ids(g["nodes"], "upstream")) == ["bronze.account_move", "bronze.res_partner", "odoo.account_move",
                                                    "odoo.res_partner"]
    assert sorted(_ids(g["nodes"], "downstream")) == ["gold.ar_aging", "gold.ar_summary", "gold.revenue_monthly"]
    assert _ids(g["nodes"], "focus") == ["silver.invoices"]
    by_id = {n["id"]: n for n in g["nodes"]}
    assert by_id["odoo.account_move"]["distance"] == 2 and by_id["odoo.account_move"]["layer"] is None
    assert by_id["gold.ar_summary"] == {"id": "gold.ar_summary", "layer": "gold", "name": "ar_summary",
                                        "role": "downstream", "distance": 2}
    assert len(g["edges"]) == 7 and ("bronze.unrelated", "silver.other") not in {(e["source"], e["target"])
                                                                                  for e in g["edges"]}
    near = lineage.graph(ctx, SYSTEM, "silver.invoices", "dev", depth=1)
    assert sorted(n["id"] for n in near["nodes"]) == ["bronze.account_move", "bronze.res_partner",
                                                      "gold.ar_aging", "gold.revenue_monthly", "silver.invoices"]
    lonely = lineage.graph(ctx, SYSTEM, "gold.nothing", "dev")
    assert lonely["nodes"] == [{"id": "gold.nothing", "layer": "gold", "name": "nothing", "role": "focus",
                                "distance": 0}] and lonely["edges"] == []


def test_edges_are_upserted_and_scoped(ctx: Context) -> None:
    assert _record(ctx, "r1", "p", ["bronze.a", "bronze.b"], ["silver.c"]) == 2
    assert _record(ctx, "r2", "q", ["bronze.a"], ["silver.c", "bronze.a"]) == 1  # no self-edge
    with ctx.db.read() as conn:
        rows = conn.execute(select(lineage_edges).order_by(lineage_edges.c.source)).mappings().all()
    assert [(r["source"], r["target"], r["run_id"], r["phase"]) for r in rows] == [
        ("bronze.a", "silver.c", "r2", "q"), ("bronze.b", "silver.c", "r1", "p")]
    _record(ctx, "r3", "p", ["bronze.a"], ["silver.c"], env="prod")
    workspaces.create(ctx, "acme")
    _record(ctx, "r4", "p", ["bronze.x"], ["silver.c"], workspace="acme")
    with ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(lineage_edges)).scalar_one() == 4
    assert sorted(_ids(lineage.graph(ctx, SYSTEM, "silver.c", "dev")["nodes"], "upstream")) == ["bronze.a", "bronze.b"]
    assert _ids(lineage.graph(ctx, SYSTEM, "silver.c", "prod")["nodes"], "upstream") == ["bronze.a"]
    assert _ids(lineage.graph(ctx, SYSTEM, "silver.c", "dev", "acme")["nodes"], "upstream") == ["bronze.x"]

    default_id = workspaces.resolve_for(ctx, SYSTEM, "default")
    member_of_default = Principal(name="ana", role="analyst", workspace_ids=frozenset({default_id}))
    with pytest.raises(NotFound):
        lineage.graph(ctx, member_of_default, "silver.c", "dev", "acme")
    for bad in (["not dotted"], ["bronze."], [""]):
        with pytest.raises(InvalidInput):
            _record(ctx, "r5", "p", bad, ["silver.c"])
    with pytest.raises(InvalidInput):
        lineage.graph(ctx, SYSTEM, "silver.c", "qa")
