"""The catalog's HTTP protocol with a plain HTTP client: the error model, every commit requirement,
multi-table transactions, paging, exists/metrics/refs, the OAuth2 token endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.services import auth
from lakehouse.services.context import Context

V1 = "/iceberg/v1/default"


@pytest.fixture
def http(ctx: Context) -> Iterator[tuple[TestClient, dict[str, str]]]:
    auth.create_user(ctx, "eng", "engineer", None)
    headers = {"Authorization": f"Bearer {auth.create_token(ctx, 'eng')}"}
    lake_tables.write_table(catalog_for(ctx.settings), "bronze", "dev", "t1", pa.table({"id": [1, 2]}))
    lake_tables.write_table(catalog_for(ctx.settings), "bronze", "dev", "t2", pa.table({"id": [3]}))
    with TestClient(create_app(ctx, reaper=False)) as client:
        yield client, headers
    close_catalogs()


def _error(r: Any, status: int, type_: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and err["type"] == type_ and err["message"]


def _table(client: TestClient, h: dict[str, str], name: str = "t1") -> dict[str, Any]:
    r = client.get(f"{V1}/namespaces/bronze_dev/tables/{name}", headers=h)
    assert r.status_code == 200, r.text
    table: dict[str, Any] = r.json()
    return table


def test_errors_are_in_the_spec_error_model(http: tuple[TestClient, dict[str, str]]) -> None:
    client, h = http
    _error(client.get(f"{V1}/namespaces"), 401, "NotAuthorizedException")
    _error(client.get(f"{V1}/namespaces", headers={"Authorization": "Bearer lh_nope"}), 401,
           "NotAuthorizedException")
    _error(client.get(f"{V1}/namespaces/bronze_dev/tables/nope", headers=h), 404, "NoSuchTableException")
    _error(client.get(f"{V1}/namespaces/nope", headers=h), 404, "NoSuchNamespaceException")
    _error(client.get("/iceberg/v1/nowhere/namespaces", headers=h), 404, "NoSuchWarehouseException")
    _error(client.get("/iceberg/v1/default/no/such/path", headers=h), 404, "NotFoundException")
    _error(client.put(f"{V1}/namespaces", headers=h), 405, "MethodNotAllowedException")
    _error(client.post(f"{V1}/namespaces", headers={**h, "Content-Type": "application/json"}, content=b"{nope"),
           400, "BadRequestException")
    _error(client.post(f"{V1}/namespaces", headers=h, json={"namespace": ["a", "b"]}), 400, "BadRequestException")
    _error(client.post(f"{V1}/namespaces", headers=h, json={"namespace": ["bronze_dev"]}), 409,
           "AlreadyExistsException")
    _error(client.delete(f"{V1}/namespaces/bronze_dev", headers=h), 403, "ForbiddenException")
    client.post(f"{V1}/namespaces", headers=h, json={"namespace": ["scratch"]})
    client.post(f"{V1}/namespaces/scratch/tables", headers=h, json={"name": "x", "schema": {
        "type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "a", "type": "long", "required": False}]}})
    _error(client.delete(f"{V1}/namespaces/scratch", headers=h), 409, "NamespaceNotEmptyException")
    assert client.head(f"{V1}/namespaces/scratch", headers=h).status_code == 204
    assert client.head(f"{V1}/namespaces/gone", headers=h).status_code == 404
    assert client.head(f"{V1}/namespaces/scratch/tables/x", headers=h).status_code == 204
    assert client.head(f"{V1}/namespaces/scratch/tables/y", headers=h).status_code == 404


def _commit(client: TestClient, h: dict[str, str], requirements: list[dict[str, Any]],
            updates: list[dict[str, Any]] | None = None, name: str = "t1") -> Any:
    return client.post(f"{V1}/namespaces/bronze_dev/tables/{name}", headers=h, json={
        "requirements": requirements,
        "updates": updates if updates is not None else [
            {"action": "set-properties", "updates": {"touched": "yes"}}]})


def test_every_requirement_type_is_checked(http: tuple[TestClient, dict[str, str]]) -> None:
    client, h = http
    md = _table(client, h)["metadata"]
    before = _table(client, h)["metadata-location"]
    wrong: list[dict[str, Any]] = [
        {"type": "assert-create"},
        {"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"},
        {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1},
        {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": None},  # main exists
        {"type": "assert-last-assigned-field-id", "last-assigned-field-id": md["last-column-id"] + 1},
        {"type": "assert-current-schema-id", "current-schema-id": md["current-schema-id"] + 1},
        {"type": "assert-last-assigned-partition-id", "last-assigned-partition-id": md["last-partition-id"] + 1},
        {"type": "assert-default-spec-id", "default-spec-id": md["default-spec-id"] + 1},
        {"type": "assert-default-sort-order-id", "default-sort-order-id": md["default-sort-order-id"] + 1},
    ]
    for req in wrong:
        _error(_commit(client, h, [req]), 409, "CommitFailedException")
    assert _table(client, h)["metadata-location"] == before  # every failed commit left the table as it was
    right = [
        {"type": "assert-table-uuid", "uuid": md["table-uuid"]},
        {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": md["current-snapshot-id"]},
        {"type": "assert-last-assigned-field-id", "last-assigned-field-id": md["last-column-id"]},
        {"type": "assert-current-schema-id", "current-schema-id": md["current-schema-id"]},
        {"type": "assert-last-assigned-partition-id", "last-assigned-partition-id": md["last-partition-id"]},
        {"type": "assert-default-spec-id", "default-spec-id": md["default-spec-id"]},
        {"type": "assert-default-sort-order-id", "default-sort-order-id": md["default-sort-order-id"]},
    ]
    r = _commit(client, h, right)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["properties"]["touched"] == "yes" and r.json()["metadata-location"] != before
    # the new metadata is what the embedded catalog sees (one store)
    assert lake_tables.load(catalog_for(client.app.state.ctx.settings), "bronze", "dev", "t1"  # type: ignore[attr-defined]
                            ).metadata.properties["touched"] == "yes"
    _error(_commit(client, h, [{"type": "no-such-requirement"}]), 400, "BadRequestException")
    _error(_commit(client, h, [], [{"action": "set-current-schema", "schema-id": 99}]), 400, "BadRequestException")
    _error(_commit(client, h, [], name="missing"), 404, "NoSuchTableException")


def test_multi_table_transaction_is_all_or_nothing(http: tuple[TestClient, dict[str, str]]) -> None:
    client, h = http
    t1, t2 = _table(client, h, "t1"), _table(client, h, "t2")

    def change(name: str, snapshot: int | None, value: str) -> dict[str, Any]:
        return {"identifier": {"namespace": ["bronze_dev"], "name": name},
                "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": snapshot}],
                "updates": [{"action": "set-properties", "updates": {"tx": value}}]}

    bad = client.post(f"{V1}/transactions/commit", headers=h, json={"table-changes": [
        change("t1", t1["metadata"]["current-snapshot-id"], "1"), change("t2", 42, "1")]})
    _error(bad, 409, "CommitFailedException")
    assert "tx" not in _table(client, h, "t1")["metadata"]["properties"]  # t1's part was not applied
    ok = client.post(f"{V1}/transactions/commit", headers=h, json={"table-changes": [
        change("t1", t1["metadata"]["current-snapshot-id"], "2"),
        change("t2", t2["metadata"]["current-snapshot-id"], "2")]})
    assert ok.status_code == 204, ok.text
    assert _table(client, h, "t1")["metadata"]["properties"]["tx"] == "2"
    assert _table(client, h, "t2")["metadata"]["properties"]["tx"] == "2"
    _error(client.post(f"{V1}/transactions/commit", headers=h, json={"table-changes": [
        change("t1", None, "3"), change("t1", None, "3")]}), 400, "BadRequestException")


def test_paging_refs_and_metrics(http: tuple[TestClient, dict[str, str]]) -> None:
    client, h = http
    for n in ("a_ns", "b_ns", "c_ns"):
        assert client.post(f"{V1}/namespaces", headers=h, json={"namespace": [n]}).status_code == 200
    seen: list[str] = []
    token = None
    while True:
        r = client.get(f"{V1}/namespaces", headers=h,
                       params={"pageSize": 5, **({"pageToken": token} if token else {})}).json()
        assert len(r["namespaces"]) <= 5
        seen += [ns[0] for ns in r["namespaces"]]
        token = r.get("next-page-token")
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 12  # 9 medallion + 3
    page = client.get(f"{V1}/namespaces/bronze_dev/tables", headers=h, params={"pageSize": 1}).json()
    assert page["identifiers"] == [{"namespace": ["bronze_dev"], "name": "t1"}]
    rest = client.get(f"{V1}/namespaces/bronze_dev/tables", headers=h,
                      params={"pageSize": 1, "pageToken": page["next-page-token"]}).json()
    assert rest["identifiers"] == [{"namespace": ["bronze_dev"], "name": "t2"}] and "next-page-token" not in rest
    assert client.get(f"{V1}/namespaces", headers=h, params={"parent": "bronze_dev"}).json() == {"namespaces": []}
    _error(client.get(f"{V1}/namespaces", headers=h, params={"parent": "nope"}), 404, "NoSuchNamespaceException")

    lake_tables.write_table(catalog_for(client.app.state.ctx.settings), "bronze", "dev", "t1",  # type: ignore[attr-defined]
                            pa.table({"id": [9]}), mode="append")
    full = _table(client, h)["metadata"]
    refs = client.get(f"{V1}/namespaces/bronze_dev/tables/t1", headers=h, params={"snapshots": "refs"}).json()
    assert len(full["snapshots"]) == 2 and [s["snapshot-id"] for s in refs["metadata"]["snapshots"]] == [
        full["current-snapshot-id"]]
    report = {"report-type": "scan-report", "table-name": "bronze_dev.t1", "snapshot-id": 1, "filter": True,
              "schema-id": 0, "projected-field-ids": [1], "projected-field-names": ["id"], "metrics": {}}
    assert client.post(f"{V1}/namespaces/bronze_dev/tables/t1/metrics", headers=h, json=report).status_code == 204


def test_oauth_token_endpoint(http: tuple[TestClient, dict[str, str]], ctx: Context) -> None:
    client, h = http
    api_token = h["Authorization"].split()[1]
    url = "/iceberg/v1/oauth/tokens"
    bad_grant = client.post(url, data={"grant_type": "password", "client_secret": api_token})
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "unsupported_grant_type"
    bad_secret = client.post(url, data={"grant_type": "client_credentials", "client_secret": "lh_x"})
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    other_id = client.post(url, data={"grant_type": "client_credentials", "client_id": "root",
                                      "client_secret": api_token})
    assert other_id.status_code == 401
    got = client.post(url, data={"grant_type": "client_credentials", "client_id": "eng", "client_secret": api_token,
                                 "scope": "catalog"})
    assert got.status_code == 200 and got.json()["token_type"] == "bearer" and got.json()["expires_in"] == 3600
    access = {"Authorization": f"Bearer {got.json()['access_token']}"}
    assert client.get(f"{V1}/namespaces", headers=access).status_code == 200
    real = ctx.clock
    ctx.clock = lambda: real() + timedelta(hours=2)
    try:
        _error(client.get(f"{V1}/namespaces", headers=access), 401, "NotAuthorizedException")
    finally:
        ctx.clock = real
    auth.revoke_tokens(ctx, "eng")  # revoking the API token ends its access tokens at once
    _error(client.get(f"{V1}/namespaces", headers=access), 401, "NotAuthorizedException")


def test_not_in_our_openapi_document(http: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = http
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/iceberg")]


def test_every_served_endpoint_is_documented() -> None:
    from pathlib import Path

    from lakehouse.services.iceberg_rest import ENDPOINTS

    doc = (Path(__file__).parents[2] / "docs" / "iceberg-rest.md").read_text()
    for endpoint in (*ENDPOINTS, "GET /v1/config", "POST /v1/oauth/tokens"):
        assert f"`{endpoint}`" in doc, f"{endpoint} missing from docs/iceberg-rest.md"
