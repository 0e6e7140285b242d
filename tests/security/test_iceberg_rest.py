"""Attacks on the Iceberg REST catalog (/iceberg, issue 9 part 1 under issue 10's rules): another
workspace's namespaces and tables are invisible (404), viewers cannot change anything, executor tokens
reach only their lease's workspace and environment, and hostile names and locations are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import auth, protocol
from tests.security.conftest import Attack

SCHEMA = {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "a", "type": "long", "required": False}]}


def _v1(ws: str) -> str:
    return f"/iceberg/v1/{ws}"


def _seed(attack: Attack) -> None:
    """``alpha`` holds gold_dev.secret with one row."""
    lake_tables.write_table(catalog_for(attack.ctx.settings), "gold", "dev", "secret",
                            pa.table({"secret": ["victim-row-4711"]}), workspace="alpha")


def test_other_workspaces_catalog_is_invisible(attack: Attack) -> None:
    _seed(attack)
    c, beta = attack.client, attack.headers("beta_engineer")
    assert c.get("/iceberg/v1/config", params={"warehouse": "alpha"}, headers=beta).status_code == 404
    for path in ("/namespaces", "/namespaces/gold_dev", "/namespaces/gold_dev/tables",
                 "/namespaces/gold_dev/tables/secret"):
        r = c.get(_v1("alpha") + path, headers=beta)
        assert r.status_code == 404 and "victim" not in r.text, path
    assert c.post(_v1("alpha") + "/namespaces", headers=beta, json={"namespace": ["x"]}).status_code == 404
    assert c.delete(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=beta).status_code == 404
    # within its own prefix beta sees its own (empty) gold_dev, never alpha's table
    own = c.get(_v1("beta") + "/namespaces/gold_dev/tables", headers=beta)
    assert own.status_code == 200 and own.json()["identifiers"] == []
    # nor through the default workspace's bare names (alpha's store namespace is alpha__gold_dev)
    assert c.get(_v1("default") + "/namespaces/alpha__gold_dev/tables/secret",
                 headers=attack.headers("admin")).status_code == 404
    assert c.get(_v1("beta") + "/namespaces/gold_dev/tables/secret", headers=beta).status_code == 404


def test_viewers_and_analysts_cannot_change_the_catalog(attack: Attack) -> None:
    _seed(attack)
    c = attack.client
    for who in ("alpha_viewer", "alpha_analyst"):
        h = attack.headers(who)
        assert c.get(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=h).status_code == 200
        tries = [
            c.post(_v1("alpha") + "/namespaces", headers=h, json={"namespace": ["mine"]}),
            c.post(_v1("alpha") + "/namespaces/gold_dev/properties", headers=h, json={"updates": {"a": "b"}}),
            c.post(_v1("alpha") + "/namespaces/gold_dev/tables", headers=h, json={"name": "t", "schema": SCHEMA}),
            c.post(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=h, json={
                "requirements": [], "updates": [{"action": "set-properties", "updates": {"x": "y"}}]}),
            c.post(_v1("alpha") + "/transactions/commit", headers=h, json={"table-changes": [{
                "identifier": {"namespace": ["gold_dev"], "name": "secret"}, "requirements": [], "updates": []}]}),
            c.post(_v1("alpha") + "/tables/rename", headers=h, json={
                "source": {"namespace": ["gold_dev"], "name": "secret"},
                "destination": {"namespace": ["gold_dev"], "name": "stolen"}}),
            c.delete(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=h,
                     params={"purgeRequested": "true"}),
        ]
        for r in tries:
            assert r.status_code == 403 and r.json()["error"]["type"] == "ForbiddenException", (who, r.text)
    assert lake_tables.table_exists(catalog_for(attack.ctx.settings), "gold", "dev", "secret", "alpha")


def test_executor_tokens_reach_only_their_leases_workspace_and_environment(attack: Attack) -> None:
    _seed(attack)
    c = attack.client
    ex = attack.headers("executor")
    # no lease: nothing, not even the config
    assert c.get("/iceberg/v1/config", params={"warehouse": "alpha"}, headers=ex).status_code == 403
    assert c.get(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=ex).status_code == 403
    run = attack.run("beta_engineer", "beta", [{"name": "p", "type": "noop"}], environment="dev")
    assert run["status_code"] == 201, run
    (claim,) = protocol.claim(attack.ctx, auth.authenticate_token(attack.ctx, attack.tokens["executor"]),
                              "w1", ["noop"])
    lease = {**ex, "X-Lakehouse-Lease": f"{claim['run_id']}:{claim['lease_token']}"}
    assert c.get(_v1("beta") + "/namespaces", headers=lease).json()["namespaces"] == [
        ["bronze_dev"], ["gold_dev"], ["silver_dev"]]
    made = c.post(_v1("beta") + "/namespaces/gold_dev/tables", headers=lease, json={"name": "out", "schema": SCHEMA})
    assert made.status_code == 200, made.text
    assert c.get(_v1("beta") + "/namespaces/gold_prod/tables", headers=lease).status_code == 404
    assert c.get(_v1("alpha") + "/namespaces/gold_dev/tables/secret", headers=lease).status_code == 403
    forged = {**ex, "X-Lakehouse-Lease": f"{claim['run_id']}:not-the-lease"}
    assert c.get(_v1("beta") + "/namespaces", headers=forged).status_code == 403
    # an executor bound to beta cannot even name alpha
    assert c.get(_v1("alpha") + "/namespaces", headers={**attack.headers("beta_executor"),
                                                        "X-Lakehouse-Lease": lease["X-Lakehouse-Lease"]}
                 ).status_code == 404


def test_hostile_names_are_refused(attack: Attack) -> None:
    c, h = attack.client, attack.headers("admin")
    for name in ("../etc", "alpha__gold_dev", "Gold", "a.b", "x" * 101, "_x", "a__b", "bad name", "é"):
        r = c.post(_v1("default") + "/namespaces", headers=h, json={"namespace": [name]})
        assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequestException", name
    nested = c.post(_v1("default") + "/namespaces", headers=h, json={"namespace": ["bronze_dev", "x"]})
    assert nested.status_code == 400
    for table in ("../../x", "Upper", "a b", "x" * 201, "a.b"):
        r = c.post(_v1("default") + "/namespaces/bronze_dev/tables", headers=h, json={"name": table, "schema": SCHEMA})
        assert r.status_code == 400, table
    assert c.get(_v1("default") + "/namespaces/bronze_dev%1Fx/tables", headers=h).status_code == 404
    assert c.get(_v1("default") + "/namespaces/..%2F..%2Fetc/tables", headers=h).status_code == 404


def test_locations_outside_the_workspace_are_refused(attack: Attack, tmp_path: Path) -> None:
    _seed(attack)
    c, beta = attack.client, attack.headers("beta_engineer")
    secret = lake_tables.load(catalog_for(attack.ctx.settings), "gold", "dev", "secret", "alpha")
    wh = str(catalog_for(attack.ctx.settings).properties["warehouse"])

    def refused(r: Any) -> None:
        assert r.status_code == 403 and r.json()["error"]["type"] == "ForbiddenException", r.text

    # register alpha's table (its metadata file) into beta: refused, never read
    refused(c.post(_v1("beta") + "/namespaces/gold_dev/register", headers=beta,
                   json={"name": "stolen", "metadata-location": secret.metadata_location}))
    refused(c.post(_v1("beta") + "/namespaces/gold_dev/register", headers=beta,
                   json={"name": "passwd", "metadata-location": "file:///etc/passwd"}))
    refused(c.post(_v1("beta") + "/namespaces/gold_dev/register", headers=beta,
                   json={"name": "dots", "metadata-location": f"{wh}/beta__gold_dev/../alpha__gold_dev/x.json"}))
    # create a table over alpha's folder, or write paths pointing there
    refused(c.post(_v1("beta") + "/namespaces/gold_dev/tables", headers=beta,
                   json={"name": "t", "schema": SCHEMA, "location": f"{wh}/alpha__gold_dev/secret"}))
    refused(c.post(_v1("beta") + "/namespaces/gold_dev/tables", headers=beta, json={
        "name": "t", "schema": SCHEMA, "properties": {"write.data.path": f"{wh}/alpha__gold_dev/secret/data"}}))
    made = c.post(_v1("beta") + "/namespaces/gold_dev/tables", headers=beta, json={"name": "mine", "schema": SCHEMA})
    assert made.status_code == 200
    url = _v1("beta") + "/namespaces/gold_dev/tables/mine"
    refused(c.post(url, headers=beta, json={"requirements": [], "updates": [
        {"action": "set-location", "location": f"{wh}/alpha__gold_dev/secret"}]}))
    alpha_snapshot = secret.metadata.current_snapshot()
    assert alpha_snapshot is not None
    refused(c.post(url, headers=beta, json={"requirements": [], "updates": [
        {"action": "add-snapshot", "snapshot": {"snapshot-id": 7, "timestamp-ms": 1, "sequence-number": 1,
                                                "manifest-list": alpha_snapshot.manifest_list,
                                                "summary": {"operation": "append"}, "schema-id": 0}}]}))
    # alpha's files are all still there
    assert lake_tables.read_table(catalog_for(attack.ctx.settings), "gold", "dev", "secret",
                                  workspace="alpha").column("secret").to_pylist() == ["victim-row-4711"]


def test_revoked_token_ends_oauth_access_at_once(attack: Attack) -> None:
    c = attack.client
    got = c.post("/iceberg/v1/oauth/tokens", data={"grant_type": "client_credentials", "client_id": "alpha_engineer",
                                                   "client_secret": attack.tokens["alpha_engineer"]})
    access = {"Authorization": f"Bearer {got.json()['access_token']}"}
    assert c.get(_v1("alpha") + "/namespaces", headers=access).status_code == 200
    assert c.get(_v1("beta") + "/namespaces", headers=access).status_code == 404
    auth.revoke_tokens(attack.ctx, "alpha_engineer")
    assert c.get(_v1("alpha") + "/namespaces", headers=access).status_code == 401
    forged = {"Authorization": "Bearer lhit_" + "A" * 100}
    assert c.get(_v1("alpha") + "/namespaces", headers=forged).status_code == 401
