"""Login, sessions, CSRF, lockout, logout and password change."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from lakehouse.domain.principal import Principal
from lakehouse.services import users
from lakehouse.services.context import Context
from lakehouse.store.tables import audit_log, memberships, web_sessions
from lakehouse.store.tables import users as users_table
from tests.web.conftest import PASSWORD, Browser, BrowserFor, csrf_of, login

RUN = {"spec_slug": "demo", "git_sha": "abc", "phases": [{"name": "a", "type": "noop"}]}


def test_pages_need_a_session(anon: TestClient, people: dict[str, str]) -> None:
    r = anon.get("/runs?status=failed", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs%3Fstatus%3Dfailed"
    r = anon.get("/runs", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.headers["HX-Redirect"].startswith("/login")


def test_login_sets_a_safe_cookie_and_lands_on_next(anon: TestClient, people: dict[str, str]) -> None:
    page = anon.get("/login?next=/executors")
    token = csrf_of(page.text)
    r = anon.post("/login", data={"name": "viewer", "password": PASSWORD, "csrf_token": token, "next": "/executors"},
                  follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/executors"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("lh_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert anon.get("/executors").status_code == 200
    # an open redirect through ?next= is refused
    anon.cookies.clear()
    page = anon.get("/login")
    token = csrf_of(page.text)
    r = anon.post("/login", data={"name": "viewer", "password": PASSWORD, "csrf_token": token,
                                  "next": "//evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_cookie_is_secure_over_tls(app: FastAPI, people: dict[str, str]) -> None:
    c = TestClient(app, base_url="https://lakehouse.test")
    r = login(c, "viewer")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("lh_session="))
    assert "Secure" in cookie


def test_wrong_password_and_executor_accounts_are_refused(anon: TestClient, people: dict[str, str],
                                                          ctx: Context) -> None:
    r = login(anon, "viewer", "wrong password")
    assert r.status_code == 401 and "wrong user name or password" in r.text
    assert "lh_session=" not in r.headers.get("set-cookie", "")
    r = login(anon, "bot")
    assert r.status_code == 403 and "executor accounts cannot log in" in r.text
    with ctx.db.read() as conn:
        actions = [a for (a,) in conn.execute(select(audit_log.c.action).where(audit_log.c.action.like("login%")))]
    assert actions == ["login.failed", "login.failed"]


def test_lockout_after_five_failures_even_with_the_right_password(anon: TestClient, people: dict[str, str]) -> None:
    for _ in range(5):
        assert login(anon, "analyst", "nope nope nope").status_code == 401
    r = login(anon, "analyst")
    assert r.status_code == 429 and "locked" in r.text and r.headers["retry-after"] == "60"
    assert login(anon, "viewer").status_code == 303  # other users are not locked
    # nor is the account for other addresses
    assert login(TestClient(anon.app, client=("192.0.2.7", 4000)), "analyst").status_code == 303


def test_session_acts_with_the_current_workspace_role(browser_for: BrowserFor, ctx: Context) -> None:
    engineer = browser_for("engineer")
    headers = {"X-CSRF-Token": engineer.csrf}
    assert engineer.client.post("/ops/runs", json=RUN, headers=headers).status_code == 201
    with ctx.db.write() as conn:  # the engineer is only a viewer in the default workspace from now on
        uid: int = conn.execute(select(users_table.c.id).where(users_table.c.name == "engineer")).scalar_one()
        conn.execute(update(memberships).where(memberships.c.user_id == uid).values(role="viewer"))
    assert engineer.client.post("/ops/runs", json=RUN, headers=headers).status_code == 403
    assert engineer.get("/runs").status_code == 200


def test_address_rate_limit(anon: TestClient, people: dict[str, str]) -> None:
    for i in range(20):
        assert login(anon, f"nobody{i}", "x" * 8).status_code == 401
    assert login(anon, "viewer").status_code == 429


def test_logout_ends_the_session(admin_browser: Browser, ctx: Context) -> None:
    assert admin_browser.get("/").status_code == 200
    cookie = admin_browser.client.cookies.get("lh_session")
    r = admin_browser.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    with ctx.db.read() as conn:
        assert conn.execute(select(web_sessions)).first() is None
    # the old cookie value is useless now
    admin_browser.client.cookies.set("lh_session", cookie or "")
    assert admin_browser.get("/", follow_redirects=False).status_code == 303


def test_password_change(browser_for: BrowserFor, ctx: Context) -> None:
    first = browser_for("engineer")
    second = browser_for("engineer")
    r = first.post("/account/password", {"current": "wrong one!", "new": "a new password", "confirm": "a new password"})
    assert r.status_code == 422 and "current password is wrong" in r.text
    r = first.post("/account/password", {"current": PASSWORD, "new": "short", "confirm": "short"})
    assert r.status_code == 422
    r = first.post("/account/password", {"current": PASSWORD, "new": "a new password", "confirm": "a new password"})
    assert r.status_code == 303
    assert first.get("/").status_code == 200  # this session stays
    assert second.get("/", follow_redirects=False).status_code == 303  # the other one ended
    c = TestClient(first.client.app)
    assert login(c, "engineer").status_code == 401
    assert login(c, "engineer", "a new password").status_code == 303


def test_disabled_user_loses_sessions(browser_for: BrowserFor, ctx: Context) -> None:
    viewer = browser_for("viewer")
    users.set_disabled(ctx, Principal(name="admin", role="admin"), "viewer", True)
    assert viewer.get("/", follow_redirects=False).status_code == 303
    c = TestClient(viewer.client.app)
    assert login(c, "viewer").status_code == 401


def test_csrf_is_required_on_every_cookie_authenticated_change(admin_browser: Browser, anon: TestClient,
                                                               admin_token: str) -> None:
    c = admin_browser.client
    run_id = c.post("/ops/runs", json=RUN, headers={"Authorization": f"Bearer {admin_token}"}).json()["run_id"]
    # a form without the token
    r = c.post(f"/runs/{run_id}/cancel", data={}, follow_redirects=False)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    # a wrong token, and the token of another session
    r = c.post(f"/runs/{run_id}/cancel", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert r.status_code == 403
    # the JSON API through the cookie needs the header too
    r = c.post(f"/ops/runs/{run_id}/cancel")
    assert r.status_code == 403
    r = c.post("/ops/runs", json=RUN)
    assert r.status_code == 403
    # an HTML client gets an HTML answer
    r = c.post(f"/runs/{run_id}/cancel", data={}, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert c.get(f"/ops/runs/{run_id}").json()["status"] == "queued"
    # with the header (htmx) it works
    r = c.post(f"/ops/runs/{run_id}/cancel", headers={"X-CSRF-Token": admin_browser.csrf})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the login form needs its double-submit token
    r = anon.post("/login", data={"name": "admin", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    # bearer-token API clients carry no ambient credentials: no CSRF token needed
    r = anon.post("/ops/runs", json=RUN, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 201


def test_security_headers(admin_browser: Browser) -> None:
    r = admin_browser.get("/")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert re.search(r'hx-headers=\'\{"X-CSRF-Token": "[^"]+"\}\'', r.text)


def test_cli_unlock_lifts_the_lockout(anon: TestClient, people: dict[str, str], ctx: Context,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli.main import app

    for _ in range(5):
        assert login(anon, "analyst", "nope nope nope").status_code == 401
    assert login(anon, "analyst").status_code == 429
    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    result = CliRunner().invoke(app, ["users", "unlock", "analyst"])
    assert result.exit_code == 0 and "unlocked analyst" in result.output
    assert login(anon, "analyst").status_code == 303
    assert CliRunner().invoke(app, ["users", "unlock", "nobody"]).exit_code != 0
