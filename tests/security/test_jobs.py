"""Attacks on /api/jobs: other workspaces, lower roles, executors, hostile input (issue 7)."""

from __future__ import annotations

from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import auth, connections, runs, users
from tests.jobs.pg_source import pg_source, scalar  # noqa: F401  (a session fixture)
from tests.security.conftest import ADMIN, Attack, run_of, work

JOB = {"name": "orders", "type": "sql", "params": {"n": {"type": "int", "default": 1}},
       "sql": {"query": "SELECT {{ n }} AS n"}}


def _create(attack: Attack, who: str, workspace: str, definition: dict[str, Any] | None = None) -> Any:
    return attack.client.post("/api/jobs", headers=attack.headers(who),
                              json={"workspace": workspace, "definition": definition or JOB})


def test_another_workspaces_job_is_not_found(attack: Attack) -> None:
    assert _create(attack, "alpha_engineer", "alpha").status_code == 201
    h = attack.headers("beta_engineer")
    for method, path, body in [("get", "/api/jobs/orders?workspace=alpha", None),
                               ("get", "/api/jobs/orders/versions?workspace=alpha", None),
                               ("post", "/api/jobs/orders/runs?workspace=alpha", {}),
                               ("put", "/api/jobs/orders", {"workspace": "alpha", "definition": JOB}),
                               ("delete", "/api/jobs/orders?workspace=alpha", None),
                               ("post", "/api/jobs/orders/backfills?workspace=alpha", {"from": "2024-01-01",
                                                                                        "to": "2024-01-02"})]:
        r = attack.client.request(method.upper(), path, headers=h, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}
    assert attack.client.get("/api/jobs", headers=h).json()["jobs"] == []
    assert _create(attack, "beta_engineer", "alpha").status_code == 404


def test_other_workspaces_runs_and_backfills_are_not_found(attack: Attack) -> None:
    _create(attack, "alpha_engineer", "alpha")
    run = attack.client.post("/api/jobs/orders/runs?workspace=alpha", headers=attack.headers("alpha_engineer"),
                             json={}).json()
    bf = attack.client.post("/api/jobs/orders/backfills?workspace=alpha", headers=attack.headers("alpha_engineer"),
                            json={"from": "2024-01-01", "to": "2024-01-03"}).json()
    h = attack.headers("beta_engineer")
    assert attack.client.post(f"/api/jobs/runs/{run['run_id']}/rerun", headers=h).status_code == 404
    assert attack.client.get(f"/api/jobs/backfills/{bf['id']}", headers=h).status_code == 404
    assert attack.client.post(f"/api/jobs/backfills/{bf['id']}/cancel", headers=h).status_code == 404
    assert attack.client.get(f"/api/jobs/backfills/{bf['id']}", headers=attack.headers("alpha_viewer")).status_code \
        == 200


def test_viewer_and_analyst_cannot_create_or_run(attack: Attack) -> None:
    _create(attack, "alpha_engineer", "alpha")
    for who in ("alpha_viewer", "alpha_analyst"):
        assert _create(attack, who, "alpha", {**JOB, "name": "mine"}).status_code == 403
        assert attack.client.post("/api/jobs/orders/runs?workspace=alpha", headers=attack.headers(who),
                                  json={}).status_code == 403
        assert attack.client.post("/api/jobs/orders/pause?workspace=alpha",
                                  headers=attack.headers(who)).status_code == 403
        assert attack.client.get("/api/jobs/orders?workspace=alpha", headers=attack.headers(who)).status_code == 200
    assert attack.client.get("/api/jobs/orders/runs?workspace=alpha",
                             headers=attack.headers("alpha_engineer")).json()["runs"] == []


@pytest.mark.parametrize("who", ["executor", "beta_executor"])
def test_executors_cannot_use_the_jobs_api(attack: Attack, who: str) -> None:
    _create(attack, "admin", "beta")
    h = attack.headers(who)
    assert attack.client.get("/api/jobs", headers=h).status_code == 403
    assert attack.client.get("/api/jobs/orders?workspace=beta", headers=h).status_code == 403
    assert attack.client.post("/api/jobs/orders/runs?workspace=beta", headers=h, json={}).status_code == 403
    assert _create(attack, who, "beta", {**JOB, "name": "x"}).status_code == 403


@pytest.mark.parametrize(("definition", "field"), [
    ({**JOB, "schedule": {"cron": "every day"}}, "schedule.cron"),
    ({**JOB, "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Atlantis"}}, "schedule.timezone"),
    ({**JOB, "params": {"n": {"type": "int", "default": "one"}}}, "params.n"),
    ({**JOB, "name": "Robert'); DROP TABLE jobs;--"}, "name"),
    ({**JOB, "type": "python", "sql": None, "python": {"callable": "subprocess:run"}}, "python.callable"),
    ({**JOB, "connections": ["someone_elses"]}, "connections.0"),
    ({**JOB, "triggers": [{"on_success_of": "orders"}]}, "definition"),
])
def test_hostile_definitions_are_clear_errors_and_change_nothing(attack: Attack, definition: dict[str, Any],
                                                                 field: str) -> None:
    definition = {k: v for k, v in definition.items() if v is not None}
    r = _create(attack, "alpha_engineer", "alpha", definition)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["message"] and any(d["field"].startswith(field) for d in err["details"]), err
    assert attack.client.get("/api/jobs", headers=attack.headers("admin")).json()["jobs"] == []


def test_wrong_parameter_types_and_name_clash(attack: Attack) -> None:
    h = attack.headers("alpha_engineer")
    assert _create(attack, "alpha_engineer", "alpha").status_code == 201
    clash = _create(attack, "alpha_engineer", "alpha", {**JOB, "description": "another"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "job_exists"
    bad = attack.client.post("/api/jobs/orders/runs?workspace=alpha", headers=h, json={"params": {"n": "DROP"}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "params.n"
    assert attack.client.get("/api/jobs/orders/runs?workspace=alpha", headers=h).json()["runs"] == []
    versions = attack.client.get("/api/jobs/orders/versions?workspace=alpha", headers=h).json()["versions"]
    assert [v["version"] for v in versions] == [1]


def test_the_api_journey(attack: Attack) -> None:
    """create → run → rerun with another parameter → both in history; edit → diff."""
    h = attack.headers("alpha_engineer")
    assert _create(attack, "alpha_engineer", "alpha").json()["version"] == 1
    run = attack.client.post("/api/jobs/orders/runs?workspace=alpha", headers=h, json={"params": {"n": 2}}).json()
    again = attack.client.post(f"/api/jobs/runs/{run['run_id']}/rerun", headers=h, json={"params": {"n": 3}})
    assert again.status_code == 201 and again.json()["labels"]["param.n"] == "3"
    history = attack.client.get("/api/jobs/orders/runs?workspace=alpha", headers=h).json()["runs"]
    assert {r["run_id"] for r in history} == {run["run_id"], again.json()["run_id"]}
    text = "name: orders\ntype: sql\nsql:\n  query: SELECT 2\n"
    edited = attack.client.put("/api/jobs/orders", headers=h, json={"workspace": "alpha", "yaml": text})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    diff = attack.client.get("/api/jobs/orders/diff?workspace=alpha&from=1&to=2", headers=h).json()["diff"]
    assert "-  query: SELECT {{ n }} AS n" in diff and "+  query: SELECT 2" in diff


# --- sql jobs on a PostgreSQL connection: the connection must be the caller's to use, and read-only ---

SOURCE_SECRET = "src-pass-4711-never-shown"


def _source(attack: Attack, workspace: str, pg: dict[str, Any], name: str = "src_pg") -> dict[str, Any]:
    who = auth.authenticate_token(attack.ctx, attack.tokens[f"{workspace}_engineer"])
    return connections.create(attack.ctx, who, workspace=workspace, environment="dev", name=name, type_="postgres",
                              config=pg["config"], secrets={"password": SOURCE_SECRET})


def _source_job(query: str, **sql: Any) -> dict[str, Any]:
    return {"name": "from_source", "type": "sql", "params": {"who": {"type": "string", "default": "world"}},
            "sql": {"query": query, "connection": "src_pg", **sql}}


def _run_source_job(lake: Attack, definition: dict[str, Any], who: str = "alpha_engineer") -> dict[str, Any]:
    assert _create(lake, who, "alpha", definition).status_code == 201
    r = lake.client.post("/api/jobs/from_source/runs?workspace=alpha", headers=lake.headers(who), json={})
    assert r.status_code == 201, r.text
    work(lake)
    return run_of(lake, r.json()["run_id"])


def test_a_sql_job_reads_its_postgres_connection(lake: Attack, pg_source: dict[str, Any]) -> None:  # noqa: F811
    _source(lake, "alpha", pg_source)
    final = _run_source_job(lake, _source_job("SELECT greeting || ' ' || who AS line, current_database() AS db "
                                              "FROM people WHERE who = {{ who }}", target="gold.greetings",
                                              mode="merge", keys=["line"]))
    assert final["status"] == "succeeded", [p["error"] for p in final["phases"]]
    assert [p["name"] for p in final["phases"]] == ["extract", "publish"]
    from lakehouse.lake import tables as lake_tables
    from lakehouse.lake.catalog import catalog_for

    rows = lake_tables.read_table(catalog_for(lake.ctx.settings), "gold", "dev", "greetings",
                                  workspace="alpha").to_pylist()
    assert rows == [{"line": "hello world", "db": pg_source["config"]["database"]}]  # read from the source
    trail = runs.read_events(lake.ctx, final["run_id"], SYSTEM)
    assert any(e["type"] == "CONNECTION_USED" and e["payload"]["connection"] == "src_pg" for e in trail)


def test_a_job_cannot_name_a_connection_it_may_not_use(attack: Attack, pg_source: dict[str, Any]) -> None:  # noqa: F811
    _source(attack, "beta", pg_source)  # beta's connection: alpha cannot see it
    for definition, field in ((_source_job("SELECT 1 AS n"), "connections"),
                              ({**JOB, "connections": ["src_pg"]}, "connections.0")):
        r = _create(attack, "alpha_engineer", "alpha", definition)
        assert r.status_code == 422, r.text
        assert any(d["field"].startswith(field) for d in r.json()["error"]["details"]), r.json()
    # a connection that is not PostgreSQL cannot be a sql job's source
    who = auth.authenticate_token(attack.ctx, attack.tokens["alpha_engineer"])
    connections.create(attack.ctx, who, workspace="alpha", environment="dev", name="src_pg", type_="webhook",
                       config={"url": "http://127.0.0.1:9/hook"}, secrets={})
    r = _create(attack, "alpha_engineer", "alpha", _source_job("SELECT 1 AS n"))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "sql.connection", r.text
    assert attack.client.get("/api/jobs", headers=attack.headers("admin")).json()["jobs"] == []


def test_a_creator_who_lost_the_workspace_gets_no_secret(lake: Attack, pg_source: dict[str, Any]) -> None:  # noqa: F811
    _source(lake, "alpha", pg_source)
    assert _create(lake, "alpha_engineer", "alpha", _source_job("SELECT who FROM people")).status_code == 201
    run = lake.client.post("/api/jobs/from_source/runs?workspace=alpha", headers=lake.headers("alpha_engineer"),
                           json={}).json()
    users.set_membership(lake.ctx, ADMIN, "alpha_engineer", "alpha", False)  # before a worker claims it
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] != "succeeded"
    assert "creator_not_allowed" in (final["phases"][0]["error"] or "")
    assert not any(e["type"] == "CONNECTION_USED" for e in runs.read_events(lake.ctx, run["run_id"], SYSTEM))


@pytest.mark.parametrize("query", [
    "INSERT INTO people VALUES ('mallory', 'pwned') RETURNING who",
    "SELECT 1 AS n; DELETE FROM people",
    "WITH gone AS (DELETE FROM people RETURNING who) SELECT who FROM gone",
    "SELECT bump() AS n",  # a write inside a function: no lexical check sees it, the transaction refuses it
    "SELECT 1 AS n FROM people FOR UPDATE",
    "SELECT set_config('transaction_read_only', 'off', true) AS x",
    "COPY people TO STDOUT",
])
def test_sql_cannot_write_through_the_read_only_source(lake: Attack, pg_source: dict[str, Any],  # noqa: F811
                                                       query: str) -> None:
    _source(lake, "alpha", pg_source)
    final = _run_source_job(lake, _source_job(query))
    assert final["status"] == "failed", final["phases"][0]
    error = final["phases"][0]["error"] or ""
    assert any(why in error for why in ("sql_not_allowed", "read-only", "read-write mode")), error
    assert scalar(pg_source["dsn"], "SELECT count(*) FROM people") == 2
    assert scalar(pg_source["dsn"], "SELECT count(*) FROM hits") == 0
    assert SOURCE_SECRET not in str(final)
