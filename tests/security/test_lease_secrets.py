"""Connection secrets handed to a worker for a lease only (issue 10 item 3, issue 7's connections by
name): who may get them, for which run, and that they never reach an answer, event or manifest."""

from __future__ import annotations

import json
from typing import Any

from lakehouse.connectors.odoo_seed import seed
from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import auth, connections, protocol, runs
from tests.security.conftest import Attack, run_of, work

SECRET = "pg-pass-never-leaks-4711"


def _principal(attack: Attack, name: str) -> Principal:
    return auth.authenticate_token(attack.ctx, attack.tokens[name])


def _pg_connection(attack: Attack, workspace: str, name: str = "warehouse_pg") -> dict[str, Any]:
    return connections.create(attack.ctx, _principal(attack, f"{workspace}_engineer"), workspace=workspace,
                              environment="dev", name=name, type_="postgres",
                              config={"host": "127.0.0.1", "port": "5432", "database": "no_such_db_lh",
                                      "user": "postgres"}, secrets={"password": SECRET})


def _ingest_run(attack: Attack, who: str, workspace: str, connection: str) -> dict[str, Any]:
    spec = {"name": "by_connection", "version": 1,
            "sources": {"src": {"kind": "sqlite", "connection": connection}},
            "ingest": {"source": "src", "groups": {"master": ["res_company"]}}}
    return attack.run(who, workspace, [{"name": "ingest", "type": "ingest", "params": {"group": "master"}}],
                      {"spec": spec})


def _claim(attack: Attack, who: str = "executor") -> dict[str, Any]:
    got = protocol.claim(attack.ctx, _principal(attack, who), f"w-{who}", ["ingest"])
    assert got, "nothing to claim"
    return got[0]


def test_a_run_reads_its_source_through_a_stored_connection(lake: Attack) -> None:
    home = lake.ctx.settings.home
    (home / "sources").mkdir(parents=True, exist_ok=True)
    seed(f"sqlite:///{home / 'sources' / 'odoo.db'}", 1)
    connections.create(lake.ctx, _principal(lake, "alpha_engineer"), workspace="alpha", environment="dev",
                       name="odoo_src", type_="sqlite", config={"path": str(home / "sources" / "odoo.db")}, secrets={})
    run = _ingest_run(lake, "alpha_engineer", "alpha", "odoo_src")
    assert run["status_code"] == 201, run
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["phases"][0]["status"] == "succeeded", final["phases"][0]["error"]
    events = runs.read_events(lake.ctx, run["run_id"], SYSTEM)
    assert any(e["type"] == "CONNECTION_USED" and e["payload"]["connection"] == "odoo_src" for e in events)
    # the phase staged the table of the run's workspace: the ingest read through the connection
    assert "bronze.res_company" in final["phases"][0]["output_manifest"]["outputs"]
    assert not lake_tables.table_exists(catalog_for(lake.ctx.settings), "bronze", "dev", "res_company", "default")


def test_secrets_handed_for_a_lease_never_reach_answers_events_or_manifests(lake: Attack) -> None:
    _pg_connection(lake, "alpha")
    run = _ingest_run(lake, "alpha_engineer", "alpha", "warehouse_pg")
    work(lake)  # the source database does not exist: the attempt fails after the secret was handed out
    final = run_of(lake, run["run_id"])
    assert final["phases"][0]["attempt"] >= 1 and final["phases"][0]["status"] != "succeeded"
    trail = runs.read_events(lake.ctx, run["run_id"], SYSTEM)
    assert any(e["type"] == "CONNECTION_USED" for e in trail)
    everything = json.dumps([final, trail], default=str)
    assert SECRET not in everything
    for path in (f"/ops/runs/{run['run_id']}", f"/ops/runs/{run['run_id']}/events", "/api/connections"):
        r = lake.client.get(path, headers=lake.headers("alpha_engineer"))
        assert SECRET not in r.text


def test_only_the_current_lease_holder_gets_the_secret(attack: Attack) -> None:
    _pg_connection(attack, "alpha")
    run = _ingest_run(attack, "alpha_engineer", "alpha", "warehouse_pg")
    claim = _claim(attack)
    url = f"/ops/runs/{run['run_id']}/connections/warehouse_pg"
    wrong = attack.client.post(url, json={"lease_token": "not-the-lease"}, headers=attack.headers("executor"))
    assert wrong.status_code == 409 and SECRET not in wrong.text
    ok = attack.client.post(url, json={"lease_token": claim["lease_token"]}, headers=attack.headers("executor"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["secrets"] == {"password": SECRET}
    protocol.fail(attack.ctx, SYSTEM, run["run_id"], claim["lease_token"], "stop", retryable=False)
    after = attack.client.post(url, json={"lease_token": claim["lease_token"]}, headers=attack.headers("executor"))
    assert after.status_code == 409 and SECRET not in after.text  # revoked with the lease


def test_people_cannot_fetch_lease_secrets(attack: Attack) -> None:
    _pg_connection(attack, "alpha")
    run = _ingest_run(attack, "alpha_engineer", "alpha", "warehouse_pg")
    claim = _claim(attack)
    for who in ("alpha_engineer", "alpha_viewer", "beta_engineer"):
        r = attack.client.post(f"/ops/runs/{run['run_id']}/connections/warehouse_pg",
                               json={"lease_token": claim["lease_token"]}, headers=attack.headers(who))
        assert r.status_code == 403 and SECRET not in r.text, who


def test_executor_bound_to_beta_cannot_fetch_alphas_connection(attack: Attack) -> None:
    _pg_connection(attack, "alpha")
    run = _ingest_run(attack, "alpha_engineer", "alpha", "warehouse_pg")
    claim = _claim(attack)
    r = attack.client.post(f"/ops/runs/{run['run_id']}/connections/warehouse_pg",
                           json={"lease_token": claim["lease_token"]}, headers=attack.headers("beta_executor"))
    assert r.status_code == 404 and SECRET not in r.text


def test_a_run_cannot_get_a_connection_it_did_not_declare(attack: Attack) -> None:
    _pg_connection(attack, "alpha", "other_pg")
    _pg_connection(attack, "alpha")
    run = _ingest_run(attack, "alpha_engineer", "alpha", "warehouse_pg")
    claim = _claim(attack)
    r = attack.client.post(f"/ops/runs/{run['run_id']}/connections/other_pg",
                           json={"lease_token": claim["lease_token"]}, headers=attack.headers("executor"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "connection_not_declared"


def test_a_run_in_beta_cannot_name_alphas_connection(attack: Attack) -> None:
    _pg_connection(attack, "alpha")
    run = _ingest_run(attack, "beta_engineer", "beta", "warehouse_pg")
    claim = _claim(attack)
    r = attack.client.post(f"/ops/runs/{run['run_id']}/connections/warehouse_pg",
                           json={"lease_token": claim["lease_token"]}, headers=attack.headers("executor"))
    assert r.status_code == 404 and SECRET not in r.text
