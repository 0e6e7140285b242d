"""Attacks on /api/jobs: other workspaces, lower roles, executors, hostile input (issue 7)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.conftest import Attack

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
