"""Attacks on runtime caps (/api/caps, the Caps page, queue caps at enqueue): another workspace's caps
are invisible, only admins set or delete, executors have no use of the API, hostile values are refused
with a clear 422, and a full queue answers 429 in the JSON error shape."""

from __future__ import annotations

from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import caps
from tests.security.conftest import Attack

MEMBERS = [f"{ws}_{r}" for ws in ("alpha", "beta") for r in ("engineer", "analyst", "viewer")]


def _alpha_cap(attack: Attack, **limits: Any) -> int:
    mode = limits.pop("queue_mode", None)
    cap = caps.set_cap(attack.ctx, SYSTEM, "alpha", "pipeline", "alpha-secret-pipeline",
                       limits or {"max_concurrent": 2}, mode)
    return int(cap["id"])


@pytest.mark.parametrize("who", ["beta_engineer", "beta_analyst", "beta_viewer"])
def test_a_member_of_beta_cannot_read_or_change_alphas_caps(attack: Attack, who: str) -> None:
    cap_id = _alpha_cap(attack)
    h = attack.headers(who)
    c = attack.client
    listed = c.get("/api/caps", headers=h)
    assert listed.status_code == 200 and listed.json() == [] and "alpha-secret" not in listed.text
    for method, path, body in [("get", f"/api/caps/{cap_id}", None), ("get", "/api/caps?workspace=alpha", None)]:
        r = c.request(method.upper(), path, headers=h, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert set(r.json()) == {"error"} and "alpha-secret" not in r.text
    # refused, and answered exactly as for a cap or workspace that does not exist (no existence oracle)
    for (method, path, body), (_, ghost_path, ghost_body) in [
            (("delete", f"/api/caps/{cap_id}", None), ("delete", "/api/caps/999999", None)),
            (("put", "/api/caps", {"workspace": "alpha", "scope": "workspace", "max_concurrent": 0}),
             ("put", "/api/caps", {"workspace": "no-such-ws", "scope": "workspace", "max_concurrent": 0}))]:
        r = c.request(method.upper(), path, headers=h, json=body)
        ghost = c.request(method.upper(), ghost_path, headers=h, json=ghost_body)
        assert r.status_code in (403, 404) and r.status_code == ghost.status_code, (method, path, r.text)
        assert "alpha-secret" not in r.text
    assert [x["id"] for x in caps.report(attack.ctx, SYSTEM)] == [cap_id]  # nothing changed
    assert caps.report(attack.ctx, SYSTEM)[0]["max_concurrent"] == 2


@pytest.mark.parametrize("who", ["alpha_engineer", "alpha_analyst", "alpha_viewer"])
def test_members_read_their_caps_but_only_admins_set_or_delete(attack: Attack, who: str) -> None:
    cap_id = _alpha_cap(attack)
    h = attack.headers(who)
    c = attack.client
    mine = c.get("/api/caps", headers=h).json()
    assert [x["id"] for x in mine] == [cap_id] and mine[0]["usage"]["concurrent"] == 0
    assert c.get(f"/api/caps/{cap_id}", headers=h).status_code == 200
    r = c.put("/api/caps", headers=h, json={"workspace": "alpha", "scope": "workspace", "max_concurrent": 1})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert c.delete(f"/api/caps/{cap_id}", headers=h).status_code == 403
    admin = attack.headers("admin")
    r = c.put("/api/caps", headers=admin, json={"workspace": "alpha", "scope": "workspace", "max_concurrent": 1})
    assert r.status_code == 200 and r.json()["scope"] == "workspace"
    assert c.delete(f"/api/caps/{cap_id}", headers=admin).status_code == 204


@pytest.mark.parametrize("who", ["executor", "beta_executor"])
def test_an_executor_has_no_use_of_the_caps_api(attack: Attack, who: str) -> None:
    cap_id = _alpha_cap(attack)
    h = attack.headers(who)
    c = attack.client
    for method, path, body in [("get", "/api/caps", None), ("get", f"/api/caps/{cap_id}", None),
                               ("put", "/api/caps", {"workspace": "beta", "scope": "workspace", "max_concurrent": 99}),
                               ("delete", f"/api/caps/{cap_id}", None)]:
        r = c.request(method.upper(), path, headers=h, json=body)
        assert r.status_code in (403, 404), (method, path, r.text)
        assert "alpha-secret" not in r.text
    assert len(caps.report(attack.ctx, SYSTEM)) == 1


@pytest.mark.parametrize("body", [
    {"scope": "pipeline", "value": "x'; DROP TABLE caps; --", "max_concurrent": 1},
    {"scope": "pipeline", "value": "a\x00b", "max_concurrent": 1},
    {"scope": "capability", "value": "", "max_concurrent": 1},
    {"scope": "pipeline", "value": "p" * 201, "max_concurrent": 1},
    {"scope": "workspace", "max_concurrent": 10**30},
    {"scope": "workspace", "max_concurrent": -5},
    {"scope": "workspace", "max_concurrent": "5"},
    {"scope": "workspace", "max_concurrent": True},
    {"scope": "workspace", "runtime_s_per_day": 1e308},
    {"scope": "workspace", "max_phase_timeout_s": -1},
    {"scope": "workspace", "max_queued_runs": 1, "queue_mode": "drop"},
    {"scope": "workspace"},
    {"scope": "../../etc", "max_concurrent": 1},
    {"scope": "workspace", "max_concurrent": 1, "owner": "root"},
    {"scope": "workspace", "max_concurrent": 1, "workspace": "nope"},
])
def test_hostile_cap_values_are_refused(attack: Attack, body: dict[str, Any]) -> None:
    body = {"workspace": "alpha", **body}
    r = attack.client.put("/api/caps", headers=attack.headers("admin"), json=body)
    assert r.status_code in (404, 422), r.text
    assert set(r.json()) == {"error"} and r.json()["error"]["message"]
    assert caps.report(attack.ctx, SYSTEM) == []


def test_not_a_number_is_refused(attack: Attack) -> None:
    raw = b'{"workspace": "alpha", "scope": "workspace", "runtime_s_per_day": NaN}'
    r = attack.client.put("/api/caps", headers={**attack.headers("admin"), "Content-Type": "application/json"},
                          content=raw)
    assert r.status_code == 422 and set(r.json()) == {"error"}
    assert attack.client.get(f"/api/caps/{2**70}", headers=attack.headers("admin")).status_code in (404, 422)


def test_a_full_queue_answers_429_naming_the_cap_and_beta_is_not_affected(attack: Attack) -> None:
    cap_id = _alpha_cap(attack, max_queued_runs=1)
    phases = [{"name": "p", "type": "noop"}]
    assert attack.run("alpha_engineer", "alpha", phases, spec_slug="alpha-secret-pipeline")["status_code"] == 201
    r = attack.client.post("/ops/runs", headers=attack.headers("alpha_engineer"), json={
        "spec_slug": "alpha-secret-pipeline", "git_sha": "0" * 7, "workspace": "alpha", "phases": phases,
        "input_manifest": {}})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    err = r.json()["error"]
    assert err["code"] == "queue_cap" and err["details"]["cap_id"] == cap_id
    # the same pipeline name in beta is beta's own: alpha's cap neither counts nor refuses it
    for _ in range(2):
        assert attack.run("beta_engineer", "beta", phases, spec_slug="alpha-secret-pipeline")["status_code"] == 201


def test_a_held_run_shows_its_reason_only_to_who_may_see_the_run(attack: Attack) -> None:
    _alpha_cap(attack, max_queued_runs=1, queue_mode="hold")
    phases = [{"name": "p", "type": "noop"}]
    attack.run("alpha_engineer", "alpha", phases, spec_slug="alpha-secret-pipeline")
    held = attack.run("alpha_engineer", "alpha", phases, spec_slug="alpha-secret-pipeline")
    assert held["status_code"] == 201 and "queue cap" in held["held"]["reason"]
    r = attack.client.get(f"/ops/runs/{held['run_id']}", headers=attack.headers("beta_engineer"))
    assert r.status_code == 404


def _login(attack: Attack, name: str) -> None:
    c = attack.client
    c.cookies.clear()
    csrf = c.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    r = c.post("/login", data={"name": name, "password": "correct horse battery", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303, r.text


def test_the_caps_page_shows_only_the_members_workspaces(attack: Attack) -> None:
    _alpha_cap(attack)
    _login(attack, "beta_viewer")
    page = attack.client.get("/caps")
    assert page.status_code == 200 and "alpha-secret" not in page.text and "No caps" in page.text
    _login(attack, "alpha_viewer")
    page = attack.client.get("/caps")
    assert page.status_code == 200 and "alpha-secret-pipeline" in page.text
    attack.client.cookies.clear()
