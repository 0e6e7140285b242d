"""The registry's edges: /api/datasets and `lakehouse tables list|show|tag|register`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lakehouse.api.app import create_app
from lakehouse.cli.main import app
from lakehouse.services import auth
from lakehouse.services.context import Context
from tests.datasets.conftest import write_table


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, reaper=False)) as c:
        yield c


def _headers(ctx: Context, name: str, role: str) -> dict[str, str]:
    auth.create_user(ctx, name, role, "correct horse battery")
    return {"Authorization": f"Bearer {auth.create_token(ctx, name)}"}


def test_api(ctx: Context, catalog: Any, client: TestClient) -> None:
    eng, analyst = _headers(ctx, "eve", "engineer"), _headers(ctx, "ana", "analyst")
    tbl = write_table(catalog, "silver", "orders", rows=2)
    r = client.get("/api/datasets", headers=analyst)
    assert r.status_code == 200 and [d["name"] for d in r.json()["datasets"]] == ["silver.orders"]
    r = client.post("/api/datasets", headers=eng, json={"name": "gold.orders_copy", "tags": ["Finance"],
                                                         "metadata_location": tbl.metadata_location})
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "eve" and r.json()["tags"] == ["finance"] and r.json()["origin"] == "manual"
    assert client.post("/api/datasets", headers=eng, json={"name": "gold.orders_copy", "metadata_location":
                                                           tbl.metadata_location}).json()["error"]["code"] \
        == "dataset_exists"
    assert client.post("/api/datasets", headers=analyst, json={"name": "gold.x", "metadata_location":
                                                               tbl.metadata_location}).status_code == 403
    r = client.patch("/api/datasets/dev/silver.orders", headers=eng,
                     json={"owner": "ana", "description": "orders", "add_tags": ["sales"]})
    assert r.status_code == 200 and r.json()["tags"] == ["sales"]
    assert client.patch("/api/datasets/dev/silver.orders", headers=analyst, json={}).status_code == 403
    r = client.get("/api/datasets", headers=analyst, params={"tag": "sales", "owner": "ana"})
    assert [d["name"] for d in r.json()["datasets"]] == ["silver.orders"]
    r = client.get("/api/datasets/dev/silver.orders", headers=analyst)
    assert r.status_code == 200 and r.json()["schema"][0]["name"] == "id"
    r = client.get("/api/datasets/dev/gold.nothing", headers=analyst)
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found"
    assert client.get("/api/datasets").status_code == 401


def test_cli(ctx: Context, catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    write_table(catalog, "gold", "revenue", rows=3)
    runner = CliRunner()
    r = runner.invoke(app, ["tables", "tag", "gold.revenue", "finance", "monthly"])
    assert r.exit_code == 0, r.output
    assert "finance, monthly" in r.output
    r = runner.invoke(app, ["tables", "tag", "gold.revenue", "monthly", "--remove"])
    assert r.exit_code == 0 and "finance" in r.output
    r = runner.invoke(app, ["tables", "list", "--tag", "finance", "--json"])
    assert r.exit_code == 0, r.output
    import json
    [d] = json.loads(r.output)
    assert d["name"] == "gold.revenue" and d["tags"] == ["finance"]
    r = runner.invoke(app, ["tables", "list"])
    assert r.exit_code == 0 and "gold.revenue" in r.output
    r = runner.invoke(app, ["tables", "show", "gold.revenue"])
    assert r.exit_code == 0 and "metadata_location" in r.output and "amount" in r.output
    r = runner.invoke(app, ["tables", "show", "gold.nothing"])
    assert r.exit_code != 0 and "not found" in r.output
    r = runner.invoke(app, ["tables", "register", "gold.copy", "--metadata-location",
                            d["metadata_location"], "--owner", "ana", "--tag", "copy"])
    assert r.exit_code == 0, r.output
