"""The permission matrix: docs/permissions.md equals domain/roles.py, and every role and action is
tried against the service layer (or, where the API is the guard, over HTTP with that role's token)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import PERMISSIONS, Action, Role
from lakehouse.services import auth, connections, users
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, ServiceError
from lakehouse.web import queries
from tests.web.conftest import PASSWORD, BrowserFor

DOC = Path(__file__).parents[2] / "docs" / "permissions.md"
RUN = {"spec_slug": "demo", "git_sha": "abc", "phases": [{"name": "a", "type": "noop"}]}
ROLE_ORDER = [Role.ADMIN, Role.ENGINEER, Role.ANALYST, Role.VIEWER, Role.EXECUTOR]


def test_docs_match_the_code() -> None:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([a-z.]+)` \|[^|]*\|(.*)\|$", line)
        if m:
            cells = [c.strip() for c in m.group(2).split("|")]
            rows[m.group(1)] = {role for role, cell in zip(ROLE_ORDER, cells, strict=True) if cell == "✓"}
    assert set(rows) == {a.value for a in Action}, "every action has one row in docs/permissions.md"
    for action in Action:
        assert rows[action.value] == {r for r in Role if action in PERMISSIONS[r]}, action


def _principal(ctx: Context, role: Role) -> Principal:
    if role is Role.EXECUTOR:
        return Principal(name="bot", role="executor")
    return auth.authenticate_password(ctx, role.value, PASSWORD)


def _service_attempt(action: Action) -> Callable[[Context, Principal, dict[str, Any]], Any] | None:
    """Call the service that guards ``action`` (None: the HTTP API is the guard, tried below)."""
    return {
        Action.QUERY: lambda ctx, p, s: __import__("lakehouse.services.sql", fromlist=["x"]).run_query(
            ctx, p, "SELECT 1 AS one"),
        Action.CONNECTION_READ: lambda ctx, p, s: connections.list_connections(ctx, p),
        Action.CONNECTION_MANAGE: lambda ctx, p, s: connections.create(
            ctx, p, workspace="default", environment="dev", name=f"c-{p.role}", type_="sqlite",
            config={"path": "/tmp/x.db"}, secrets={}),
        Action.JOB_MANAGE: lambda ctx, p, s: __import__("lakehouse.services.jobs", fromlist=["x"]).save(
            ctx, p, "default", {"name": f"j_{p.role}", "type": "sql", "sql": {"query": "SELECT 1"}}),
        Action.JOB_RUN: lambda ctx, p, s: __import__("lakehouse.services.job_runs", fromlist=["x"]).run_job(
            ctx, p, "default", "no_such_job"),
        Action.JOB_PROMOTE: lambda ctx, p, s: __import__("lakehouse.services.promotions", fromlist=["x"]).promote(
            ctx, p, "default", "no_such_job", "stage"),
        Action.JOB_APPROVE: lambda ctx, p, s: __import__("lakehouse.services.promotions", fromlist=["x"]).approve(
            ctx, p, "default", "no_such_job", "stage"),
        Action.ALERT_MANAGE: lambda ctx, p, s: __import__("lakehouse.services.alerts", fromlist=["x"]).create_rule(
            ctx, p, "default", {"name": f"r-{p.role}", "kind": "run_failed"}),
        Action.CAP_MANAGE: lambda ctx, p, s: __import__("lakehouse.services.caps", fromlist=["x"]).set_cap(
            ctx, p, "default", "workspace", None, {"max_concurrent": 5}),
        Action.ALERT_RESPOND: lambda ctx, p, s: __import__("lakehouse.services.alerts", fromlist=["x"]).acknowledge(
            ctx, p, 999_999),
        Action.CATALOG_WRITE: lambda ctx, p, s: __import__("lakehouse.services.iceberg_rest", fromlist=["x"]
                                                           ).create_namespace(
            ctx, __import__("lakehouse.services.iceberg_rest", fromlist=["x"]).scope(ctx, p, "default"),
            [f"attempt_{p.role}"], {}),
        Action.USER_ADMIN: lambda ctx, p, s: users.list_users(ctx, p),
        Action.AUDIT_VIEW: lambda ctx, p, s: queries.audit_entries(ctx, p, queries.AuditFilter()),
        Action.ADMIN: lambda ctx, p, s: connections.rotate_key(ctx, Fernet.generate_key().decode(), p),
    }.get(action)


def _http_attempt(client: TestClient, action: Action, headers: dict[str, str], run_id: str) -> int:
    if action is Action.READ:
        return client.get("/api/catalog/tables", headers=headers).status_code
    if action is Action.RUN_READ:
        return client.get("/ops/runs", headers=headers).status_code
    if action is Action.RUN_CREATE:
        return client.post("/ops/runs", json=RUN, headers=headers).status_code
    if action is Action.RUN_CANCEL:
        return client.post(f"/ops/runs/{run_id}/cancel", headers=headers).status_code
    if action is Action.EXECUTE:
        return client.post("/ops/claim", json={"executor_id": "w", "capabilities": ["none"]},
                           headers=headers).status_code
    raise AssertionError(action)


@pytest.mark.parametrize("role", ROLE_ORDER, ids=lambda r: r.value)
def test_every_action_for_role(role: Role, ctx: Context, people: dict[str, str], app: Any,
                               admin_token: str) -> None:
    principal = _principal(ctx, role)
    client = TestClient(app)
    token = auth.create_token(ctx, "bot" if role is Role.EXECUTOR else role.value)
    headers = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {admin_token}"}
    for action in Action:
        expected = action in PERMISSIONS[role]
        attempt = _service_attempt(action)
        if attempt is not None:
            try:
                attempt(ctx, principal, {})
                refused = False
            except Forbidden:
                refused = True
            except ServiceError:  # got past the permission check
                refused = False
            assert refused is not expected, f"{role} {action}: expected {'allowed' if expected else 'refused'}"
        else:
            run_id = client.post("/ops/runs", json=RUN, headers=admin).json()["run_id"]
            status = _http_attempt(client, action, headers, run_id)
            assert (status == 403) is not expected, f"{role} {action}: HTTP {status}"
    client.close()


def test_viewer_is_refused_in_the_pages_too(browser_for: BrowserFor, ctx: Context, admin_token: str) -> None:
    viewer = browser_for("viewer")
    run_id = viewer.client.post("/ops/runs", json=RUN, headers={"Authorization": f"Bearer {admin_token}"}
                                ).json()["run_id"]
    page = viewer.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "Cancel run" not in page.text
    assert viewer.post(f"/runs/{run_id}/cancel").status_code == 403
    assert viewer.post(f"/runs/{run_id}/rerun").status_code == 403
    assert viewer.get("/audit").status_code == 403
    assert viewer.get("/admin/users").status_code == 403
    assert viewer.get("/connections").status_code == 403
    r = viewer.post("/connections", {"type": "sqlite", "name": "x", "environment": "dev", "f_path": "/tmp/x"})
    assert r.status_code == 403
    nav = viewer.get("/").text
    assert 'href="/audit"' not in nav and 'href="/admin/users"' not in nav and 'href="/connections"' not in nav
    assert "Not allowed" in viewer.get("/audit").text
