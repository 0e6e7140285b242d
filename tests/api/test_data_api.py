"""/api/sql, /api/queries, /api/lineage, /api/catalog: shapes, roles and workspace walls."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lakehouse.domain.principal import SYSTEM
from lakehouse.lake.catalog import close_catalogs
from lakehouse.lake.tables import write_table
from lakehouse.services import auth, lineage, workspaces
from lakehouse.services.context import Context
from lakehouse.store.tables import memberships, users
from tests.lake.support import fresh_catalog


@pytest.fixture
def lake(ctx: Context) -> Iterator[Any]:
    catalog = fresh_catalog(ctx)
    write_table(catalog, "silver", "dev", "invoices", pa.table({"id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]}),
                snapshot_properties={"run_id": "run-1"})
    write_table(catalog, "silver", "dev", "invoices", pa.table({"id": [4], "amount": [40.0]}), mode="append")
    write_table(catalog, "silver", "prod", "invoices", pa.table({"id": [9], "amount": [90.0]}))
    yield catalog
    close_catalogs()


def _headers(ctx: Context, name: str, role: str, workspace: str | None = None) -> dict[str, str]:
    auth.create_user(ctx, name, role, None)
    if workspace:
        ws_id = workspaces.create(ctx, workspace)
        with ctx.db.write() as conn:
            uid: int = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one()
            conn.execute(memberships.delete().where(memberships.c.user_id == uid))
            conn.execute(memberships.insert().values(workspace_id=ws_id, user_id=uid, role=role))
    return {"Authorization": f"Bearer {auth.create_token(ctx, name)}"}


def test_sql_roles_results_and_download(client: TestClient, ctx: Context, lake: Any, admin: dict[str, str],
                                        executor: dict[str, str]) -> None:
    body = {"sql": "SELECT id, amount FROM silver.invoices ORDER BY id", "limit": 2}
    assert client.post("/api/sql", json=body).status_code == 401
    viewer = _headers(ctx, "vic", "viewer")
    r = client.post("/api/sql", json=body, headers=viewer)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.post("/api/sql", json=body, headers=executor).status_code == 403

    analyst = _headers(ctx, "ana", "analyst")
    r = client.post("/api/sql", json=body, headers=analyst)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["columns"] == [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}]
    assert out["rows"] == [[1, 10.0], [2, 20.0]] and out["row_count"] == 4 and out["truncated"]
    assert out["snapshot_ids"][0]["table"] == "silver.invoices" and len(out["result_sha256"]) == 64

    r = client.get(f"/api/queries/{out['query_id']}/result", headers=analyst)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(r.content)).column("id").to_pylist() == [1, 2, 3, 4]
    assert client.get(f"/api/queries/{out['query_id']}/result", headers=viewer).status_code == 403

    prod = client.post("/api/sql", json={**body, "env": "prod"}, headers=admin).json()
    assert prod["rows"] == [[9, 90.0]] and prod["env"] == "prod"


def test_sql_errors(client: TestClient, admin: dict[str, str], lake: Any) -> None:
    r = client.post("/api/sql", json={"sql": "SELECT id,\n  amount +\nFROM silver.invoices"}, headers=admin)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "sql_error" and err["details"]["line"] == 3 and err["details"]["column"] >= 1
    assert "Traceback" not in r.text
    r = client.post("/api/sql", json={"sql": "SELECT 1; DROP TABLE silver.invoices"}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "sql_not_allowed"
    r = client.post("/api/sql", json={"sql": "SELECT 1", "engine": "trino"}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "engine_unavailable"
    r = client.post("/api/sql", json={"sql": "SELECT 1", "env": "qa"}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_environment"
    assert client.post("/api/sql", json={"sql": ""}, headers=admin).status_code == 422


def test_history_search_and_workspace_walls(client: TestClient, ctx: Context, lake: Any,
                                            admin: dict[str, str]) -> None:
    for i in range(3):
        assert client.post("/api/sql", json={"sql": f"SELECT {i} AS marker_{i}"}, headers=admin).status_code == 200
    client.post("/api/sql", json={"sql": "SELECT broken("}, headers=admin)
    r = client.get("/api/queries", params={"limit": 2}, headers=admin)
    assert r.status_code == 200
    page = r.json()
    assert [q["status"] for q in page["queries"]] == ["failed", "succeeded"] and page["next_before"]
    rest = client.get("/api/queries", params={"limit": 2, "before": page["next_before"]}, headers=admin).json()
    assert [q["sql"] for q in rest["queries"]] == ["SELECT 1 AS marker_1", "SELECT 0 AS marker_0"]
    assert [q["sql"] for q in client.get("/api/queries", params={"q": "MARKER_2"}, headers=admin).json()["queries"]] \
        == ["SELECT 2 AS marker_2"]
    only = client.get("/api/queries", params={"user": "alice", "status": "failed"}, headers=admin).json()["queries"]
    assert len(only) == 1 and only[0]["error"]

    outsider = _headers(ctx, "eve", "analyst", workspace="acme")
    assert client.get("/api/queries", headers=outsider).json()["queries"] == []
    qid = page["queries"][1]["query_id"]
    assert client.get(f"/api/queries/{qid}", headers=outsider).status_code == 404
    assert client.get(f"/api/queries/{qid}/result", headers=outsider).status_code == 404
    r = client.post("/api/sql", json={"sql": "SELECT * FROM silver.invoices"}, headers=outsider)
    assert r.status_code == 404 and r.json()["error"]["code"] == "workspace_not_found"
    r = client.post("/api/sql", json={"sql": "SELECT count(*) AS n FROM silver.invoices", "workspace": "acme"},
                    headers=outsider)
    assert r.status_code == 422 and r.json()["error"]["code"] == "sql_error"  # acme has no such table
    assert client.get("/api/queries", headers={}).status_code == 401


def test_lineage_endpoint(client: TestClient, ctx: Context, admin: dict[str, str]) -> None:
    lineage.record(ctx, SYSTEM, "dev", "r1", "ingest", ["odoo.account_move"], ["bronze.account_move"])
    lineage.record(ctx, SYSTEM, "dev", "r2", "transform", ["bronze.account_move"], ["silver.invoices"])
    lineage.record(ctx, SYSTEM, "dev", "r3", "transform", ["silver.invoices"], ["gold.revenue"])
    r = client.get("/api/lineage", params={"table": "silver.invoices", "env": "dev"}, headers=admin)
    assert r.status_code == 200
    g = r.json()
    assert {n["id"]: n["role"] for n in g["nodes"]} == {"odoo.account_move": "upstream",
                                                         "bronze.account_move": "upstream",
                                                         "silver.invoices": "focus", "gold.revenue": "downstream"}
    assert {(e["source"], e["target"], e["run_id"]) for e in g["edges"]} == {
        ("odoo.account_move", "bronze.account_move", "r1"), ("bronze.account_move", "silver.invoices", "r2"),
        ("silver.invoices", "gold.revenue", "r3")}
    viewer = _headers(ctx, "vic", "viewer")
    assert client.get("/api/lineage", params={"table": "silver.invoices"}, headers=viewer).status_code == 200
    outsider = _headers(ctx, "eve", "analyst", workspace="acme")
    assert client.get("/api/lineage", params={"table": "silver.invoices"}, headers=outsider).status_code == 404
    r = client.get("/api/lineage", params={"table": "silver.invoices", "workspace": "acme"}, headers=outsider)
    assert r.status_code == 200 and r.json()["edges"] == []
    assert client.get("/api/lineage", params={"table": "no dots"}, headers=admin).status_code == 422


def test_catalog_endpoints(client: TestClient, ctx: Context, lake: Any, admin: dict[str, str]) -> None:
    viewer = _headers(ctx, "vic", "viewer")
    r = client.get("/api/catalog/namespaces", headers=viewer)
    assert r.status_code == 200
    spaces = {n["namespace"]: n for n in r.json()["namespaces"]}
    assert len(spaces) == 9 and spaces["silver_dev"]["tables"] == 1 and spaces["silver_dev"]["schema"] == "silver"
    assert spaces["gold_prod"]["tables"] == 0

    tables = client.get("/api/catalog/tables", params={"env": "dev"}, headers=viewer).json()["tables"]
    assert [t["sql_name"] for t in tables] == ["silver.invoices"]

    r = client.get("/api/catalog/tables/silver_dev/invoices", headers=viewer)
    assert r.status_code == 200, r.text
    t = r.json()
    assert [(f["name"], f["type"]) for f in t["schema"]] == [("id", "long"), ("amount", "double")]
    assert t["row_count"] == 4 and len(t["snapshots"]) == 2 and t["snapshots"][0]["summary"]["run_id"] == "run-1"
    assert t["current_snapshot_id"] == t["snapshots"][-1]["snapshot_id"] and t["snapshots"][-1]["current"]
    assert t["sample"] is None  # viewers may not query, so they see no rows
    t = client.get("/api/catalog/tables/silver/invoices", params={"env": "prod", "sample": 5}, headers=admin).json()
    assert t["namespace"] == "silver_prod" and t["sample"] == {"columns": ["id", "amount"], "rows": [[9, 90.0]]}

    assert client.get("/api/catalog/tables/silver_dev/nope", headers=admin).status_code == 404
    assert client.get("/api/catalog/tables/platinum_dev/x", headers=admin).status_code == 404
    outsider = _headers(ctx, "eve", "analyst", workspace="acme")
    assert client.get("/api/catalog/tables/silver_dev/invoices", headers=outsider).status_code == 404
    assert client.get("/api/catalog/namespaces", headers=outsider).status_code == 404
    acme = client.get("/api/catalog/namespaces", params={"workspace": "acme"}, headers=outsider).json()
    assert {n["namespace"] for n in acme["namespaces"]} >= {"acme__bronze_dev", "acme__gold_prod"}
    assert client.get("/api/catalog/namespaces").status_code == 401
