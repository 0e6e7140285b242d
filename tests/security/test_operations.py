"""Attacks on the operations layer: alerts, rules, routes, scores and /metrics across workspaces and
roles; secrets of channels never leave in a notification or an attempt's error."""

from __future__ import annotations

from fastapi import FastAPI

from lakehouse.api import alerts as alerts_api
from lakehouse.api import ops_metrics as ops_metrics_api
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import alerts, connections, notify
from lakehouse.store import ops_reads
from tests.security.conftest import Attack


def _wire(attack: Attack) -> None:
    app = attack.client.app
    assert isinstance(app, FastAPI)
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/api/alerts" not in paths:
        app.include_router(alerts_api.router)
    if "/metrics" not in paths:
        app.include_router(ops_metrics_api.router)


def _failed_run(attack: Attack, workspace: str) -> str:
    from lakehouse.domain.principal import Principal
    from lakehouse.services import protocol

    r = attack.run("admin", workspace, [{"name": "p", "type": "noop", "max_attempts": 1}])
    run_id = str(r["run_id"])
    robot = Principal(name="executor", role="executor")
    [claim] = protocol.claim(attack.ctx, robot, "x", ["noop"], run_id=run_id)
    protocol.fail(attack.ctx, robot, run_id, claim["lease_token"], "boom", retryable=False)
    return run_id


def _beta_alert(attack: Attack) -> int:
    alerts.create_rule(attack.ctx, SYSTEM, "beta", {"name": "f", "kind": "run_failed"})
    with attack.ctx.db.write() as conn:
        from lakehouse.services import alert_fire
        from lakehouse.store import alerts as store

        [rule] = [r for r in store.list_rules(conn, None) if r["workspace"] == "beta"]
        return alert_fire.fire(conn, rule, "dev/secret-pipeline", "beta's secret failure", {"k": "v"},
                               attack.ctx.clock())


def test_alerts_of_another_workspace_are_invisible(attack: Attack) -> None:
    _wire(attack)
    alert_id = _beta_alert(attack)
    h = attack.headers("alpha_engineer")
    assert attack.client.get("/api/alerts", headers=h).json()["alerts"] == []
    assert attack.client.get("/api/alert-rules", headers=h).json()["rules"] == []
    for method, path in [("get", f"/api/alerts/{alert_id}"), ("post", f"/api/alerts/{alert_id}/ack"),
                         ("post", f"/api/alerts/{alert_id}/resolve")]:
        r = getattr(attack.client, method)(path, headers=h)
        assert r.status_code == 404 and "secret" not in r.text
    beta = attack.headers("beta_engineer")
    assert attack.client.post(f"/api/alerts/{alert_id}/ack", headers=beta).status_code == 200


def test_viewers_and_executors_cannot_manage_or_respond(attack: Attack) -> None:
    _wire(attack)
    alert_id = _beta_alert(attack)
    for who in ("beta_viewer", "beta_analyst", "executor"):
        h = attack.headers(who)
        r = attack.client.post("/api/alert-rules", headers=h, json={"workspace": "beta", "name": "x",
                                                                     "kind": "run_failed"})
        assert r.status_code == 403, who
        assert attack.client.post(f"/api/alerts/{alert_id}/ack", headers=h).status_code in (403, 404), who
        assert attack.client.put("/api/score-weights/beta", headers=h,
                                 json={"weights": {"outcome": 0}}).status_code == 403, who
    r = attack.client.post("/api/alert-rules", headers=attack.headers("alpha_engineer"),
                           json={"workspace": "beta", "name": "x", "kind": "run_failed"})
    assert r.status_code == 404


def test_a_route_cannot_use_another_workspaces_connection(attack: Attack) -> None:
    _wire(attack)
    connections.create(attack.ctx, SYSTEM, workspace="beta", environment="dev", name="beta-hook", type_="webhook",
                       config={"url": "http://127.0.0.1:9/hook"}, secrets={"signing_secret": "beta-signing-key"})
    r = attack.client.post("/api/alert-routes", headers=attack.headers("alpha_engineer"),
                           json={"workspace": "alpha", "severity": "error", "channel": "beta-hook"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_channel"


def test_scores_of_another_workspace_are_invisible(attack: Attack) -> None:
    _wire(attack)
    run_id = _failed_run(attack, "beta")
    assert attack.client.get(f"/api/runs/{run_id}/score", headers=attack.headers("alpha_engineer")).status_code == 404
    r = attack.client.get(f"/api/runs/{run_id}/score", headers=attack.headers("beta_viewer"))
    assert r.status_code == 200 and r.json()["score"] < 100
    listed = attack.client.get("/api/run-scores", headers=attack.headers("alpha_viewer")).json()["runs"]
    assert run_id not in {x["run_id"] for x in listed}


def test_channel_secrets_never_leave(attack: Attack) -> None:
    _wire(attack)
    secret, auth = "whsec-never-leaves-42", "Bearer token-never-leaves-43"
    connections.create(attack.ctx, SYSTEM, workspace="beta", environment="dev", name="hook", type_="webhook",
                       config={"url": f"http://127.0.0.1:9/hook?echo={auth.split()[1]}"},
                       secrets={"signing_secret": secret, "auth_header": auth})
    alerts.add_route(attack.ctx, SYSTEM, "beta", severity_="error", channel="hook")
    alert_id = _beta_alert(attack)
    notify.deliver_due(attack.ctx)  # port 9 refuses: a failed attempt whose error might echo the URL
    detail = attack.client.get(f"/api/alerts/{alert_id}", headers=attack.headers("beta_engineer")).text
    assert secret not in detail and auth.split()[1] not in detail
    with attack.ctx.db.read() as conn:
        dumped = str([dict(r) for r in ops_reads.phases_of(conn, [])])
    assert secret not in dumped


def test_metrics_are_not_public(attack: Attack) -> None:
    _wire(attack)
    r = attack.client.get("/metrics", headers=attack.headers("admin"))
    assert r.status_code == 403  # no token configured: loopback only, and the test client is not
    attack.ctx.settings.metrics_token = "m-token"
    assert attack.client.get("/metrics", headers=attack.headers("admin")).status_code == 401
    assert attack.client.get("/metrics", headers={"Authorization": "Bearer m-token"}).status_code == 200
