"""Attacks on the Control Room's Alerts and Caps pages: another workspace's alert (unseen, untouchable:
404), a viewer pressing buttons it was not shown (403), posts without the CSRF token, hostile input
in the cap form (an error next to the field, nothing stored, nothing reflected raw), an open redirect
through ``next``."""

from __future__ import annotations

import re

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import alerts, caps
from lakehouse.web.pages_alerts import _safe_next
from tests.security.conftest import PASSWORD, Attack
from tests.web.test_alerts_page import SECRET, audit_actions, firing

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(attack: Attack, name: str) -> str:
    """Log ``attack.client`` in as ``name`` (a browser session); returns its CSRF token."""
    c = attack.client
    c.cookies.clear()
    m = CSRF_RE.search(c.get("/login").text)
    assert m
    r = c.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": m.group(1)},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    m = CSRF_RE.search(c.get("/account").text)
    assert m
    return m.group(1)


def post(attack: Attack, url: str, csrf: str | None, **data: str) -> int:
    body = {**data, **({"csrf_token": csrf} if csrf is not None else {})}
    return attack.client.post(url, data=body, follow_redirects=False).status_code


def test_a_member_of_beta_cannot_see_or_touch_an_alpha_alert(attack: Attack) -> None:
    a = firing(attack.ctx, "alpha", name="alpha-secret-rule", spec="alpha-secret-pipeline")
    csrf = login(attack, "beta_engineer")
    listing = attack.client.get("/alerts?state=all").text
    assert "alpha-secret" not in listing and "dev/alpha" not in listing and "No alert matches" in listing
    for tab in ("rules", "routing"):
        assert "alpha-secret" not in attack.client.get(f"/alerts?tab={tab}").text
    assert attack.client.get(f"/alerts/{a['id']}").status_code == 404
    assert attack.client.get("/alerts?workspace=alpha").status_code == 404
    assert post(attack, f"/alerts/{a['id']}/ack", csrf) == 404
    assert post(attack, f"/alerts/{a['id']}/resolve", csrf) == 404
    assert alerts.get_alert(attack.ctx, SYSTEM, a["id"])["status"] == "open"
    assert not [x for x in audit_actions(attack.ctx) if x[1].startswith("alert.") and x[0] == "beta_engineer"]


def test_a_viewer_cannot_acknowledge_resolve_or_edit_caps(attack: Attack) -> None:
    a = firing(attack.ctx, "alpha")
    cap = caps.set_cap(attack.ctx, SYSTEM, "alpha", "workspace", None, {"max_concurrent": 4})
    for who in ("alpha_viewer", "alpha_analyst"):
        csrf = login(attack, who)
        page = attack.client.get(f"/alerts/{a['id']}")
        assert page.status_code == 200 and "Acknowledge</button>" not in page.text and SECRET not in page.text
        assert post(attack, f"/alerts/{a['id']}/ack", csrf) == 403
        assert post(attack, f"/alerts/{a['id']}/resolve", csrf) == 403
        caps_page = attack.client.get("/caps").text
        assert "Set a cap" not in caps_page and "/delete" not in caps_page
        assert post(attack, "/caps", csrf, workspace="alpha", scope="workspace", max_concurrent="999") == 403
        assert post(attack, f"/caps/{cap['id']}/delete", csrf) == 403
    # an engineer may respond to alerts, but caps are the admins'
    csrf = login(attack, "alpha_engineer")
    assert post(attack, "/caps", csrf, workspace="alpha", scope="workspace", max_concurrent="999") == 403
    assert post(attack, f"/caps/{cap['id']}/delete", csrf) == 403
    assert alerts.get_alert(attack.ctx, SYSTEM, a["id"])["status"] == "open"
    [left] = caps.report(attack.ctx, SYSTEM)
    assert left["max_concurrent"] == 4


def test_a_beta_engineer_cannot_delete_an_alpha_cap_by_id(attack: Attack) -> None:
    cap = caps.set_cap(attack.ctx, SYSTEM, "alpha", "workspace", None, {"max_concurrent": 4})
    csrf = login(attack, "beta_engineer")
    assert post(attack, f"/caps/{cap['id']}/delete", csrf) in (403, 404)
    assert len(caps.report(attack.ctx, SYSTEM)) == 1


def test_posts_without_the_csrf_token_are_refused(attack: Attack) -> None:
    a = firing(attack.ctx, "alpha")
    login(attack, "alpha_engineer")
    assert post(attack, f"/alerts/{a['id']}/ack", None) == 403
    assert post(attack, f"/alerts/{a['id']}/resolve", "forged-token") == 403
    assert alerts.get_alert(attack.ctx, SYSTEM, a["id"])["status"] == "open"
    login(attack, "admin")
    assert post(attack, "/caps", None, workspace="alpha", scope="workspace", max_concurrent="1") == 403
    assert caps.report(attack.ctx, SYSTEM) == []


def test_hostile_cap_input_is_an_error_next_to_the_field_and_changes_nothing(attack: Attack) -> None:
    csrf = login(attack, "admin")
    script = "<script>alert(1)</script>"
    cases = [({"scope": "pipeline", "value": script, "max_concurrent": "1"}, "value"),
             ({"scope": "workspace", "max_concurrent": "1e309"}, "max_concurrent"),
             ({"scope": "workspace", "runtime_s_per_day": "nan"}, "runtime_s_per_day"),
             ({"scope": "workspace", "max_phase_timeout_s": "-5"}, "max_phase_timeout_s"),
             ({"scope": "workspace", "max_queued_runs": script}, "max_queued_runs"),
             ({"scope": "executor", "value": "w1", "max_queued_runs": "3"}, "max_queued_runs"),
             ({"scope": "'; DROP TABLE caps; --", "max_concurrent": "1"}, "scope"),
             ({"scope": "workspace", "max_concurrent": "1", "queue_mode": script}, "queue_mode")]
    for data, field in cases:
        r = attack.client.post("/caps", data={"csrf_token": csrf, "workspace": "alpha", **data},
                               follow_redirects=False)
        assert r.status_code == 422, (data, r.status_code)
        assert f'id="err-{field}"' in r.text, (data, r.text[-3000:])
        assert script not in r.text  # escaped wherever it is shown
    assert caps.report(attack.ctx, SYSTEM) == []
    r = attack.client.post("/caps", data={"csrf_token": csrf, "workspace": "alpha' OR '1'='1", "scope": "workspace",
                                          "max_concurrent": "1"}, follow_redirects=False)
    assert r.status_code == 404 and caps.report(attack.ctx, SYSTEM) == []


def test_next_cannot_redirect_off_site(attack: Attack) -> None:
    a = firing(attack.ctx, "alpha")
    csrf = login(attack, "alpha_engineer")
    r = attack.client.post(f"/alerts/{a['id']}/ack", data={"csrf_token": csrf, "next": "https://evil.example/"},
                           follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{a['id']}"
    for evil in ("//evil.example/alerts", "/alerts//evil.example", "/\\evil.example", "/alerts\\@evil.example",
                 "javascript:alert(1)", ""):
        assert _safe_next(evil, "/alerts/1") == "/alerts/1", evil
    assert _safe_next("/alerts?state=all&severity=critical", "/alerts/1") == "/alerts?state=all&severity=critical"


def test_rules_and_routes_of_another_workspace_or_by_a_viewer_are_refused(attack: Attack) -> None:
    firing(attack.ctx, "alpha", name="alpha-rule")
    [rule] = alerts.list_rules(attack.ctx, SYSTEM)
    [route] = alerts.list_routes(attack.ctx, SYSTEM)
    csrf = login(attack, "beta_engineer")
    assert post(attack, f"/alerts/rules/{rule['id']}/delete", csrf) == 404
    assert post(attack, f"/alerts/rules/{rule['id']}/enabled", csrf, enabled="0") == 404
    assert post(attack, f"/alerts/routes/{route['id']}/delete", csrf) == 404
    assert post(attack, "/alerts/rules", csrf, workspace="alpha", name="x", kind="run_failed") == 404
    assert post(attack, "/alerts/routes", csrf, workspace="alpha", severity="critical",
                channel="hook-alpha-rule") == 404
    csrf = login(attack, "alpha_viewer")
    page = attack.client.get("/alerts?tab=rules").text
    assert "alpha-rule" in page and "Add a rule" not in page and "/delete" not in page
    assert post(attack, f"/alerts/rules/{rule['id']}/delete", csrf) == 403
    assert post(attack, f"/alerts/routes/{route['id']}/delete", csrf) == 403
    assert post(attack, "/alerts/rules", csrf, workspace="alpha", name="x", kind="run_failed") == 403
    assert post(attack, f"/alerts/rules/{rule['id']}/delete", None) == 403  # and no token at all
    assert [r["id"] for r in alerts.list_rules(attack.ctx, SYSTEM)] == [rule["id"]]
    assert alerts.get_rule(attack.ctx, SYSTEM, rule["id"])["enabled"] is True
    assert [r["id"] for r in alerts.list_routes(attack.ctx, SYSTEM)] == [route["id"]]


def test_hostile_rule_input_is_escaped_and_stores_nothing(attack: Attack) -> None:
    csrf = login(attack, "alpha_engineer")
    script = "<script>alert(1)</script>"
    for data in ({"name": script, "kind": "run_failed"}, {"name": "ok", "kind": script},
                 {"name": "ok", "kind": "run_failed", "params": f"k={script}"},
                 {"name": "ok", "kind": "run_failed", "team": script}):
        r = attack.client.post("/alerts/rules", data={"csrf_token": csrf, "workspace": "alpha", **data},
                               follow_redirects=False)
        assert r.status_code == 422, (data, r.status_code)
        assert script not in r.text and 'class="field-error"' in r.text
    assert alerts.list_rules(attack.ctx, SYSTEM) == []
