"""Cross-workspace isolation: a member of another workspace tries every endpoint and page with the ids
of objects in workspace ``acme`` and must get 403/404 and never any of its data."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from lakehouse.domain.principal import Principal
from lakehouse.services import connections, workspaces
from lakehouse.services.context import Context
from tests.web.conftest import Browser, BrowserFor

SECRET = "acme-top-secret-pw-4711"
MARKERS = ("acme_private_pipeline", "acme-warehouse", SECRET, "acme-artifact.json", "acme_sql_marker")


def _seed(ctx: Context, client: TestClient, admin_token: str, executor_token: str) -> dict[str, str]:
    workspaces.create(ctx, "acme")
    admin = {"Authorization": f"Bearer {admin_token}"}
    ex = {"Authorization": f"Bearer {executor_token}"}
    run = client.post("/ops/runs", headers=admin, json={
        "spec_slug": "acme_private_pipeline", "git_sha": "abc", "workspace": "acme",
        "input_manifest": {"db": "acme-warehouse"}, "phases": [{"name": "p", "type": "acme-only"}]}).json()
    body = b'{"acme": "acme-artifact.json"}'
    sha = hashlib.sha256(body).hexdigest()
    assert client.put(f"/ops/artifacts/{sha}", content=body, headers=ex).status_code == 200
    r = client.post("/ops/artifacts", headers=ex, json={"run_id": run["run_id"], "phase": "p",
                    "name": "acme-artifact.json", "sha256": sha, "size_bytes": len(body),
                    "media_type": "application/json", "metadata": {}})
    assert r.status_code == 201, r.text
    sysadmin = Principal(name="admin", role="admin")
    conn = connections.create(ctx, sysadmin, workspace="acme", environment="dev", name="acme-warehouse",
                              type_="postgres", config={"host": "127.0.0.1", "database": "x", "user": "u"},
                              secrets={"password": SECRET})
    ids = {"run_id": run["run_id"], "sha256": sha, "conn_id": str(conn["id"]), "query_id": "1"}
    try:
        from lakehouse.services import sql

        q = sql.run_query(ctx, sysadmin, "SELECT 'acme_sql_marker' AS m", workspace="acme")
        ids["query_id"] = str(q["query_id"])
    except ImportError:
        pass
    return ids


def every_route(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every API endpoint (from the OpenAPI document) and every page."""
    from lakehouse.web import pages_admin, pages_auth, pages_data, pages_runs

    out = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
    for router in (pages_auth.router, pages_runs.router, pages_admin.router, pages_data.router):
        out += [(m, r.path) for r in router.routes if isinstance(r, APIRoute) for m in (r.methods or set()) - {"HEAD"}]
    return sorted(set(out))


def _url(path: str, ids: dict[str, str]) -> str:
    fill = {"run_id": ids["run_id"], "sha256": ids["sha256"], "conn_id": ids["conn_id"], "query_id": ids["query_id"],
            "name": "x", "env": "dev", "layer": "bronze", "table": "x", "fmt": "csv"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "x"), path)


def test_every_route_refuses_a_foreign_workspace(ctx: Context, app: Any, outsider: Browser, admin_token: str,
                                                 executor_token: str) -> None:
    ids = _seed(ctx, outsider.client, admin_token, executor_token)
    tried = 0
    for method, path in every_route(app):
        if path in ("/login", "/logout", "/health"):
            continue
        url = _url(path, ids)
        headers = {"X-CSRF-Token": outsider.csrf, "Accept": "text/html"}
        if method == "GET":
            r = outsider.client.get(url, headers=headers, follow_redirects=False)
        elif "/ops/" in url or url.startswith("/api/"):
            r = outsider.client.request(method, url, headers=headers, json={})
        else:
            r = outsider.client.request(method, url, headers=headers, data={"csrf_token": outsider.csrf},
                                        follow_redirects=False)
        tried += 1
        leaked = [m for m in MARKERS if m in r.text]
        assert not leaked, f"{method} {url} -> {r.status_code} leaks {leaked}"
        has_id = "{" in path and any(k in path for k in ("run_id", "sha256", "conn_id", "query_id"))
        if has_id:
            assert r.status_code in (403, 404, 422), f"{method} {url} -> {r.status_code}"
        assert r.status_code < 500, f"{method} {url} -> {r.status_code}: {r.text[:300]}"
    assert tried > 40
    # and nothing moved: the run is still queued, the connection still there
    admin = {"Authorization": f"Bearer {admin_token}"}
    assert outsider.client.get(f"/ops/runs/{ids['run_id']}", headers=admin).json()["status"] == "queued"
    assert connections.get(ctx, Principal(name="admin", role="admin"), int(ids["conn_id"]))["name"] == \
        "acme-warehouse"


def test_members_see_their_workspace(ctx: Context, browser_for: BrowserFor, admin_token: str,
                                     executor_token: str) -> None:
    from lakehouse.services import users

    eng = browser_for("engineer")
    ids = _seed(ctx, eng.client, admin_token, executor_token)
    assert eng.get(f"/runs/{ids['run_id']}").status_code == 404
    users.set_membership(ctx, Principal(name="admin", role="admin"), "engineer", "acme", True)
    eng = browser_for("engineer")  # memberships changed: log in again
    page = eng.get(f"/runs/{ids['run_id']}")
    assert page.status_code == 200 and "acme_private_pipeline" in page.text
    assert "acme_private_pipeline" in eng.get("/runs").text
    assert "acme-warehouse" in eng.get("/connections").text
    assert SECRET not in eng.get(f"/connections/{ids['conn_id']}").text


def test_admin_creates_a_workspace_and_manages_members_from_the_page(admin_browser: Browser,
                                                                       browser_for: BrowserFor) -> None:
    page = admin_browser.get("/admin/workspaces")
    assert page.status_code == 200 and "New workspace" in page.text and 'href="/admin/workspaces"' in page.text
    r = admin_browser.post("/admin/workspaces", {"op": "create", "slug": "finance", "name": "Finance"})
    assert r.status_code == 303
    r = admin_browser.post("/admin/workspaces", {"op": "member", "workspace": "finance", "user": "engineer",
                                                 "role": "analyst"})
    assert r.status_code == 303
    html = admin_browser.get("/admin/workspaces").text
    assert "finance" in html and "Finance" in html and 'aria-label="Role of engineer in finance"' in html
    bad = admin_browser.post("/admin/workspaces", {"op": "create", "slug": "Not A Slug"})
    assert bad.status_code == 422 and "lowercase letters" in bad.text
    above = admin_browser.post("/admin/workspaces", {"op": "member", "workspace": "finance", "user": "viewer",
                                                     "role": "engineer"})
    assert above.status_code == 422 and "caps their role" in above.text
    eng = browser_for("engineer")
    assert {w["slug"]: w["role"] for w in eng.get("/api/workspaces").json()["workspaces"]} == \
        {"default": "engineer", "finance": "analyst"}
    r = admin_browser.post("/admin/workspaces", {"op": "remove", "workspace": "finance", "user": "engineer"})
    assert r.status_code == 303
    assert eng.get("/api/workspaces").status_code == 401  # a membership change ends the user's sessions
    eng = browser_for("engineer")
    assert [w["slug"] for w in eng.get("/api/workspaces").json()["workspaces"]] == ["default"]


def test_workspace_page_is_refused_to_non_admins(browser_for: BrowserFor) -> None:
    eng = browser_for("engineer")
    assert eng.get("/admin/workspaces").status_code == 403
    assert eng.post("/admin/workspaces", {"op": "create", "slug": "mine"}).status_code == 403
    assert 'href="/admin/workspaces"' not in eng.get("/").text
