"""The Alerts page and the editable Caps page, on SQLite and PostgreSQL: alerts fired by real failing
runs through the real services, notifications attempted against a closed port, acknowledge and
resolve from the page (state and audit), filters in the URL, caps set and deleted from the page."""

from __future__ import annotations

import re
import socket
from typing import Any

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import alerts, caps, connections, notify, protocol, runs
from lakehouse.services.context import Context
from lakehouse.store.tables import audit_log
from tests.web.conftest import Browser, BrowserFor

SECRET = "whsec-never-on-a-page-0123456789"
EXECUTOR = Principal(name="robot", role="executor")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fail_a_run(ctx: Context, spec: str = "sales", workspace: str = "default") -> str:
    """A run of ``spec`` that fails its only attempt (the protocol fires run rules in that transaction)."""
    req = RunRequest(spec_slug=spec, git_sha="abc1234", environment="dev", workspace=workspace,
                     phases=[PhaseSpec(name="p0", type="noop", max_attempts=1)])
    run, _ = runs.create_run(ctx, req, SYSTEM)
    [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=run["run_id"])
    protocol.fail(ctx, EXECUTOR, run["run_id"], c["lease_token"], "boom", retryable=True)
    return str(run["run_id"])


def firing(ctx: Context, workspace: str = "default", *, name: str = "sales-failed", severity: str = "critical",
           spec: str = "sales", route: bool = True) -> dict[str, Any]:
    """A run_failed rule (routed to a webhook nobody listens on), a failing run, one delivery pass
    (a failed attempt): returns the alert."""
    rule = alerts.create_rule(ctx, SYSTEM, workspace, {"name": name, "kind": "run_failed", "severity": severity,
                                                       "pipeline": spec})
    if route:
        hook = f"hook-{name}"
        connections.create(ctx, SYSTEM, workspace=workspace, environment="dev", name=hook, type_="webhook",
                           config={"url": f"http://127.0.0.1:{closed_port()}/hook", "format": "json"},
                           secrets={"signing_secret": SECRET})
        alerts.add_route(ctx, SYSTEM, workspace, severity_=severity, channel=hook)
    fail_a_run(ctx, spec, workspace)
    notify.deliver_due(ctx)
    [alert] = [a for a in alerts.list_alerts(ctx, SYSTEM, "all") if a["rule"] == rule["name"]
               and a["workspace"] == workspace]
    return alert


def audit_actions(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.read() as conn:
        return [(r.actor, r.action) for r in conn.execute(audit_log.select().order_by(audit_log.c.id))]


def csrf_of_page(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


# --- the list ---------------------------------------------------------------------------------------

def test_alerts_page_lists_a_firing_alert_with_its_attempts(ctx: Context, browser_for: BrowserFor) -> None:
    a = firing(ctx)
    page = browser_for("viewer").get("/alerts")
    assert page.status_code == 200, page.text
    html = page.text
    assert f'href="/alerts/{a["id"]}"' in html and "run of dev/sales failed" in html
    assert "sales-failed" in html and "sev-critical" in html and "al-open" in html
    assert "hook-sales-failed" in html and "1 attempt" in html and "ConnectError" in html
    assert SECRET not in html and "X-Lakehouse-Signature" not in html
    assert 'aria-current="page">Alerts' in html  # the nav link
    assert "/ack" not in html  # a viewer gets no buttons
    html = browser_for("engineer").get("/alerts").text
    assert f'action="/alerts/{a["id"]}/ack"' in html and f'action="/alerts/{a["id"]}/resolve"' in html


def test_empty_state_says_what_to_do(ctx: Context, admin_browser: Browser) -> None:
    html = admin_browser.get("/alerts").text
    assert "Nothing is firing" in html and "rule-add" in html
    html = admin_browser.get("/alerts?tab=rules").text
    assert "No alert rules" in html
    html = admin_browser.get("/alerts?tab=routing").text
    assert "nobody is told" in html


def test_acknowledge_then_resolve_from_the_page_is_audited(ctx: Context, browser_for: BrowserFor) -> None:
    a = firing(ctx)
    b = browser_for("engineer")
    r = b.post(f"/alerts/{a['id']}/ack", {"next": "/alerts?state=all"})
    assert r.status_code == 303 and r.headers["location"] == "/alerts?state=all"
    assert alerts.get_alert(ctx, SYSTEM, a["id"])["acked_by"] == "engineer"
    assert alerts.get_alert(ctx, SYSTEM, a["id"])["status"] == "acknowledged"
    html = b.get("/alerts").text
    assert "al-acknowledged" in html and "by engineer" in html
    assert f'action="/alerts/{a["id"]}/ack"' not in html and f'action="/alerts/{a["id"]}/resolve"' in html
    again = b.post(f"/alerts/{a['id']}/ack")
    assert again.status_code == 409 and "not open" in again.text
    r = b.post(f"/alerts/{a['id']}/resolve", {"next": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{a['id']}"  # never off-site
    assert alerts.get_alert(ctx, SYSTEM, a["id"])["status"] == "resolved"
    assert ("engineer", "alert.acknowledge") in audit_actions(ctx)
    assert ("engineer", "alert.resolve") in audit_actions(ctx)
    assert "Nothing is firing" in b.get("/alerts").text
    assert "al-resolved" in b.get("/alerts?state=resolved").text


def test_filters_are_in_the_url(ctx: Context, admin_browser: Browser) -> None:
    from lakehouse.services import workspaces

    workspaces.create(ctx, "other")
    firing(ctx, name="sales-failed", severity="critical", spec="sales")
    firing(ctx, name="stock-failed", severity="warning", spec="stock", route=False)
    firing(ctx, "other", name="other-failed", severity="error", spec="sales")
    b = admin_browser
    everything = b.get("/alerts").text
    assert all(n in everything for n in ("sales-failed", "stock-failed", "other-failed"))
    # worst first: critical, error, warning
    assert everything.index("sales-failed") < everything.index("other-failed") < everything.index("stock-failed")
    warn = b.get("/alerts?severity=warning").text
    assert "stock-failed" in warn and "sales-failed" not in warn and 'option selected>warning' in warn
    assert "nobody told (no route)" in warn
    other = b.get("/alerts?workspace=other").text
    assert "other-failed" in other and "stock-failed" not in other
    none = b.get("/alerts?state=resolved&severity=critical").text
    assert "No alert matches these filters" in none
    assert b.get("/alerts?severity=apocalyptic").status_code == 422
    assert b.get("/alerts?state=maybe").status_code == 422
    assert b.get("/alerts?workspace=nowhere").status_code == 404


def test_alert_detail_shows_attempts_and_escalation(ctx: Context, browser_for: BrowserFor) -> None:
    a = firing(ctx)
    html = browser_for("viewer").get(f"/alerts/{a['id']}").text
    assert "run of dev/sales failed" in html and "Escalation" in html and "Level 0 told" in html
    assert "hook-sales-failed" in html and "✕ failed" in html and "ConnectError" in html
    assert SECRET not in html and "Acknowledge</button>" not in html
    assert "Acknowledge</button>" in browser_for("engineer").get(f"/alerts/{a['id']}").text
    assert browser_for("viewer").get("/alerts/999999").status_code == 404


def test_rules_and_routing_matrix_are_shown(ctx: Context, browser_for: BrowserFor) -> None:
    firing(ctx)
    b = browser_for("viewer")
    rules = b.get("/alerts?tab=rules").text
    assert "sales-failed" in rules and "run_failed" in rules and "pipeline <code>sales</code>" in rules
    matrix = b.get("/alerts?tab=routing").text
    assert "Routing matrix of default" in matrix and "hook-sales-failed" in matrix and "every team" in matrix
    assert SECRET not in matrix


# --- caps -----------------------------------------------------------------------------------------

def test_caps_set_replace_and_delete_from_the_page(ctx: Context, admin_browser: Browser,
                                                   browser_for: BrowserFor) -> None:
    b = admin_browser
    assert "Set a cap" in b.get("/caps").text
    r = b.post("/caps", {"workspace": "default", "scope": "pipeline", "value": "sales", "max_concurrent": "2",
                         "runtime_s_per_day": "3600", "queue_mode": "reject"})
    assert r.status_code == 303, r.text
    [cap] = caps.report(ctx, SYSTEM)
    assert (cap["scope"], cap["value"], cap["max_concurrent"], cap["runtime_s_per_day"]) == ("pipeline", "sales", 2,
                                                                                              3600.0)
    page = b.get(r.headers["location"]).text
    assert f"Cap {cap['id']} saved" in page and "<code>sales</code>" in page
    edit = b.get(f"/caps?edit={cap['id']}").text
    assert 'name="max_concurrent" inputmode="numeric" value="2"' in edit
    r = b.post("/caps", {"workspace": "default", "scope": "pipeline", "value": "sales", "max_concurrent": "3"})
    assert r.status_code == 303
    [cap] = caps.report(ctx, SYSTEM)
    assert cap["max_concurrent"] == 3 and cap["runtime_s_per_day"] is None  # replaced, the rest cleared
    bad = b.post("/caps", {"workspace": "default", "scope": "pipeline", "value": "sales", "max_concurrent": "-1"})
    assert bad.status_code == 422
    assert re.search(r'name="max_concurrent"[^>]*aria-invalid="true"', bad.text)
    assert 'id="err-max_concurrent">must be between 0 and' in bad.text
    assert caps.report(ctx, SYSTEM)[0]["max_concurrent"] == 3  # nothing changed
    words = b.post("/caps", {"workspace": "default", "scope": "workspace", "max_queued_runs": "lots"})
    assert words.status_code == 422 and 'id="err-max_queued_runs">must be a number' in words.text
    none = b.post("/caps", {"workspace": "default", "scope": "workspace"})
    assert none.status_code == 422 and 'id="err-limits">a cap sets at least one of' in none.text
    assert "Set a cap" not in browser_for("viewer").get("/caps").text
    assert "/delete" not in browser_for("engineer").get("/caps").text
    r = b.post(f"/caps/{cap['id']}/delete")
    assert r.status_code == 303 and caps.report(ctx, SYSTEM) == []
    actions = [a for _, a in audit_actions(ctx)]
    assert actions.count("cap.set") == 2 and actions.count("cap.delete") == 1


# --- rules and routes from the page ---------------------------------------------------------------

def test_rules_and_routes_are_managed_from_the_page(ctx: Context, browser_for: BrowserFor) -> None:
    connections.create(ctx, SYSTEM, workspace="default", environment="dev", name="hook", type_="webhook",
                       config={"url": f"http://127.0.0.1:{closed_port()}/hook", "format": "json"},
                       secrets={"signing_secret": SECRET})
    b = browser_for("engineer")
    assert "Add a rule" in b.get("/alerts?tab=rules").text
    r = b.post("/alerts/rules", {"workspace": "default", "name": "sales-failed", "kind": "run_failed",
                                 "severity": "critical", "pipeline": "sales", "params": "", "window_s": "600"})
    assert r.status_code == 303, r.text
    [rule] = alerts.list_rules(ctx, SYSTEM)
    assert (rule["pipeline"], rule["severity"], rule["window_s"], rule["created_by"]) == ("sales", "critical",
                                                                                         600.0, "engineer")
    bad = b.post("/alerts/rules", {"workspace": "default", "name": "slow", "kind": "duration_over_baseline",
                                   "params": "k=0.5"})
    assert bad.status_code == 422 and 'id="err-params">k must be at least 1' in bad.text
    assert 'value="k=0.5"' in bad.text  # what was typed stays
    garbled = b.post("/alerts/rules", {"workspace": "default", "name": "slow", "kind": "run_failed",
                                       "params": "nonsense"})
    assert garbled.status_code == 422 and 'id="err-params">write parameters as name=value' in garbled.text
    dup = b.post("/alerts/rules", {"workspace": "default", "name": "sales-failed", "kind": "run_failed"})
    assert dup.status_code == 409 and 'id="err-name">a rule named' in dup.text
    assert len(alerts.list_rules(ctx, SYSTEM)) == 1
    r = b.post("/alerts/routes", {"workspace": "default", "severity": "critical", "channel": "hook",
                                  "escalate_after_s": "300"})
    assert r.status_code == 303, r.text
    [route] = alerts.list_routes(ctx, SYSTEM)
    assert (route["channel"], route["level"], route["escalate_after_s"]) == ("hook", 0, 300.0)
    bad = b.post("/alerts/routes", {"workspace": "default", "severity": "critical", "channel": "nope"})
    assert bad.status_code == 422 and 'id="err-channel">no connection named' in bad.text
    bad = b.post("/alerts/routes", {"workspace": "default", "severity": "critical", "channel": "hook", "level": "x"})
    assert bad.status_code == 422 and 'id="err-level">level must be a number' in bad.text
    assert len(alerts.list_routes(ctx, SYSTEM)) == 1
    matrix = b.get("/alerts?tab=routing").text
    assert "escalates after 5 m 0 s" in matrix and f'action="/alerts/routes/{route["id"]}/delete"' in matrix
    assert b.post(f"/alerts/rules/{rule['id']}/enabled", {"enabled": "0"}).status_code == 303
    assert alerts.get_rule(ctx, SYSTEM, rule["id"])["enabled"] is False
    assert b.post(f"/alerts/routes/{route['id']}/delete").status_code == 303
    assert b.post(f"/alerts/rules/{rule['id']}/delete").status_code == 303
    assert alerts.list_rules(ctx, SYSTEM) == [] and alerts.list_routes(ctx, SYSTEM) == []
    done = [a for who, a in audit_actions(ctx) if who == "engineer" and a.startswith("alert.")]
    assert done == ["alert.rule.create", "alert.route.create", "alert.rule.update", "alert.route.delete",
                    "alert.rule.delete"]
    viewer = browser_for("viewer")
    assert "Add a rule" not in viewer.get("/alerts?tab=rules").text
    assert "Add a route" not in viewer.get("/alerts?tab=routing").text


def test_the_new_forms_mark_their_required_fields(ctx: Context, admin_browser: Browser) -> None:
    from tests.web.test_required_fields import form_problems

    problems, total = [], 0
    for url in ("/caps", "/alerts?tab=rules", "/alerts?tab=routing"):
        answer = admin_browser.get(url)
        assert answer.status_code == 200, url
        found, count = form_problems(answer.text, url)
        problems += found
        total += count
    assert not problems, "\n".join(problems)
    assert total == 8  # caps: workspace, scope; rule: workspace, name, kind; route: workspace, severity, channel
