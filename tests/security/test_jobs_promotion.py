"""Attacks on promotion (issue 7 part 4) and on the job pages (part 6): other workspaces, lower roles,
self-approval, executors, cross-site forms."""

from __future__ import annotations

from typing import Any

from lakehouse.services import promotions
from tests.security.conftest import ADMIN, Attack

JOB = {"name": "orders", "type": "sql", "params": {"n": {"type": "int", "default": 1}},
       "sql": {"query": "SELECT {{ n }} AS n"}}


def _create(attack: Attack, who: str = "alpha_engineer", workspace: str = "alpha") -> Any:
    r = attack.client.post("/api/jobs", headers=attack.headers(who), json={"workspace": workspace, "definition": JOB})
    assert r.status_code == 201, r.text
    return r.json()


def _open_stage(attack: Attack, **gates: Any) -> None:
    promotions.set_gates(attack.ctx, ADMIN, "alpha", "stage", {"min_runs": 0, **gates})


def test_another_workspaces_promotions_are_not_found(attack: Attack) -> None:
    _create(attack)
    _open_stage(attack, require_approval=True, approver_role="engineer")
    h = attack.headers("beta_engineer")
    for method, path, body in [("get", "/api/jobs/orders/promotions?workspace=alpha", None),
                               ("post", "/api/jobs/orders/promotions?workspace=alpha", {"to": "stage"}),
                               ("post", "/api/jobs/orders/promotions/stage/approve?workspace=alpha", {}),
                               ("post", "/api/jobs/orders/promotions/stage/reject?workspace=alpha", {}),
                               ("get", "/api/jobs/promotion-gates?workspace=alpha", None)]:
        r = attack.client.request(method.upper(), path, headers=h, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}


def test_lower_roles_and_executors_cannot_promote_or_approve(attack: Attack) -> None:
    _create(attack)
    _open_stage(attack, require_approval=True, approver_role="engineer")
    for who in ("alpha_viewer", "alpha_analyst", "executor"):
        r = attack.client.post("/api/jobs/orders/promotions?workspace=alpha", headers=attack.headers(who),
                               json={"to": "stage"})
        assert r.status_code == 403, (who, r.text)
    pending = attack.client.post("/api/jobs/orders/promotions?workspace=alpha",
                                 headers=attack.headers("alpha_engineer"), json={"to": "stage"})
    assert pending.status_code == 201 and pending.json()["status"] == "pending"
    for who in ("alpha_viewer", "alpha_analyst", "executor"):
        r = attack.client.post("/api/jobs/orders/promotions/stage/approve?workspace=alpha",
                               headers=attack.headers(who), json={})
        assert r.status_code == 403, (who, r.text)
    state = attack.client.get("/api/jobs/orders/promotions?workspace=alpha", headers=attack.headers("alpha_viewer"))
    assert state.status_code == 200 and state.json()["environments"][0]["promoted"] is None


def test_the_author_cannot_approve_their_own_promotion(attack: Attack) -> None:
    _create(attack)
    _open_stage(attack, require_approval=True, approver_role="engineer")
    attack.client.post("/api/jobs/orders/promotions?workspace=alpha", headers=attack.headers("alpha_engineer"),
                       json={"to": "stage"})
    r = attack.client.post("/api/jobs/orders/promotions/stage/approve?workspace=alpha",
                           headers=attack.headers("alpha_engineer"), json={})
    assert r.status_code == 403 and r.json()["error"]["code"] == "approver_refused"
    assert "alpha_engineer wrote this version" in r.json()["error"]["message"]
    r = attack.client.post("/api/jobs/orders/runs?workspace=alpha", headers=attack.headers("alpha_engineer"),
                           json={"environment": "stage"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_promoted"
    ok = attack.client.post("/api/jobs/orders/promotions/stage/approve?workspace=alpha",
                            headers=attack.headers("admin"), json={"comment": "looks right"})
    assert ok.status_code == 200 and ok.json()["status"] == "promoted"


def test_only_admins_change_gates(attack: Attack) -> None:
    for who in ("alpha_engineer", "alpha_viewer", "executor"):
        r = attack.client.put("/api/jobs/promotion-gates/prod?workspace=alpha", headers=attack.headers(who),
                              json={"min_runs": 0, "require_approval": False})
        assert r.status_code == 403, (who, r.text)
    assert promotions.get_gates(attack.ctx, ADMIN, "alpha")["prod"]["require_approval"] is True
    r = attack.client.put("/api/jobs/promotion-gates/prod?workspace=alpha", headers=attack.headers("admin"),
                          json={"min_runs": 1})
    assert r.status_code == 200 and r.json()["min_runs"] == 1
    bad = attack.client.put("/api/jobs/promotion-gates/dev?workspace=alpha", headers=attack.headers("admin"),
                            json={"min_runs": 1})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_environment"


def test_a_failed_gate_is_a_clear_409(attack: Attack) -> None:
    _create(attack)
    r = attack.client.post("/api/jobs/orders/promotions?workspace=alpha", headers=attack.headers("alpha_engineer"),
                           json={"to": "prod"})
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "promotion_gate_failed" and "never promoted to stage" in err["message"]
    assert {d["gate"] for d in err["details"]} == {"promoted_to_lower", "runs", "dq"}


def _login(attack: Attack, name: str) -> str:
    c = attack.client
    c.cookies.clear()
    page = c.get("/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = c.post("/login", data={"name": name, "password": "correct horse battery", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    home = c.get("/jobs")
    return home.text.split('name="csrf_token" value="')[1].split('"')[0]


def test_job_pages_hide_other_workspaces_and_refuse_forms_without_csrf(attack: Attack) -> None:
    _create(attack)
    csrf = _login(attack, "beta_engineer")
    c = attack.client
    assert "orders" not in c.get("/jobs").text
    assert c.get("/jobs/alpha/orders").status_code == 404
    assert c.post("/jobs/alpha/orders/run", data={"csrf_token": csrf}).status_code == 404
    _login(attack, "alpha_viewer")
    page = c.get("/jobs/alpha/orders")
    assert page.status_code == 200 and "Run now" not in page.text and "Promote" not in page.text
    assert c.post("/jobs/alpha/orders/run", data={}, follow_redirects=False).status_code == 403  # no CSRF token
    csrf = _login(attack, "alpha_viewer")
    assert c.post("/jobs/alpha/orders/run", data={"csrf_token": csrf}).status_code == 403
    assert c.post("/jobs/alpha/orders/promote", data={"csrf_token": csrf, "to": "stage"}).status_code == 403
    assert c.get("/jobs/new").status_code == 403
    c.cookies.clear()
