"""Issue 10 item 4: a token keeps the role it was minted with.

Every attack warms the server first (one request with the token), then changes the user, then sends a
fresh request at once: the old code cached principals for 5 s, so the change went unseen.
"""

from __future__ import annotations

from sqlalchemy import select, update

from lakehouse.services import auth, users
from lakehouse.store.tables import memberships, workspaces
from lakehouse.store.tables import users as users_table
from tests.security.conftest import ADMIN, PASSWORD, Attack

NOOP: list[dict[str, object]] = [{"name": "a", "type": "noop"}]
CLAIM = {"executor_id": "w1", "capabilities": ["noop"]}


def _ws_id(attack: Attack, slug: str) -> int:
    with attack.ctx.db.read() as conn:
        return int(conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar_one())


def _admin_member_of_alpha(attack: Attack) -> str:
    auth.create_user(attack.ctx, "boss", "admin", PASSWORD)
    users.set_membership(attack.ctx, ADMIN, "boss", "alpha", True)
    attack.tokens["boss"] = auth.create_token(attack.ctx, "boss")
    run = attack.run("boss", "alpha", NOOP)
    assert run["status_code"] == 201, run
    return str(run["run_id"])


def test_demoted_admin_old_token_cannot_create_runs(attack: Attack) -> None:
    _admin_member_of_alpha(attack)
    users.set_role(attack.ctx, ADMIN, "boss", "viewer")
    for ws in ("alpha", "default"):
        r = attack.run("boss", ws, NOOP)
        assert r["status_code"] in (403, 404), r
    assert attack.client.post("/api/sql", headers=attack.headers("boss"),
                              json={"sql": "select 1", "workspace": "alpha"}).status_code == 403


def test_demoted_and_removed_admin_old_token_cannot_read_the_workspace(attack: Attack) -> None:
    run_id = _admin_member_of_alpha(attack)
    assert attack.client.get(f"/ops/runs/{run_id}", headers=attack.headers("boss")).status_code == 200
    users.set_role(attack.ctx, ADMIN, "boss", "viewer")
    users.set_membership(attack.ctx, ADMIN, "boss", "alpha", False)
    assert attack.client.get(f"/ops/runs/{run_id}", headers=attack.headers("boss")).status_code == 404
    listed = attack.client.get("/ops/runs", headers=attack.headers("boss")).json()
    assert all(r["run_id"] != run_id for r in listed["runs"])


def test_member_removed_from_workspace_cannot_read_its_runs_with_an_old_token(attack: Attack) -> None:
    run = attack.run("alpha_engineer", "alpha", NOOP)
    assert run["status_code"] == 201, run
    url = f"/ops/runs/{run['run_id']}"
    assert attack.client.get(url, headers=attack.headers("alpha_engineer")).status_code == 200
    users.set_membership(attack.ctx, ADMIN, "alpha_engineer", "alpha", False)
    assert attack.client.get(url, headers=attack.headers("alpha_engineer")).status_code == 404
    assert attack.client.get(f"{url}/events", headers=attack.headers("alpha_engineer")).status_code == 404
    assert attack.run("alpha_engineer", "alpha", NOOP)["status_code"] == 404


def test_disabled_user_token_is_refused_at_once(attack: Attack) -> None:
    assert attack.client.get("/ops/runs", headers=attack.headers("alpha_viewer")).status_code == 200
    users.set_disabled(attack.ctx, ADMIN, "alpha_viewer", True)
    r = attack.client.get("/ops/runs", headers=attack.headers("alpha_viewer"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"


def test_revoked_token_is_refused_at_once(attack: Attack) -> None:
    assert attack.run("alpha_engineer", "alpha", NOOP)["status_code"] == 201
    assert auth.revoke_tokens(attack.ctx, "alpha_engineer") == 1
    assert attack.run("alpha_engineer", "alpha", NOOP)["status_code"] == 401
    assert attack.client.get("/ops/runs", headers=attack.headers("alpha_engineer")).status_code == 401


def test_executor_token_of_a_disabled_human_is_refused_at_once(attack: Attack) -> None:
    token = auth.create_token(attack.ctx, "alpha_engineer", role="executor")
    assert auth.authenticate_token(attack.ctx, token).role == "executor"  # not capped to a human role
    headers = {"Authorization": f"Bearer {token}"}
    assert attack.client.post("/ops/claim", headers=headers, json=CLAIM).status_code in (200, 204)
    users.set_disabled(attack.ctx, ADMIN, "alpha_engineer", True)
    assert attack.client.post("/ops/claim", headers=headers, json=CLAIM).status_code == 401


def test_lower_workspace_role_limits_an_engineer_token_in_that_workspace(attack: Attack) -> None:
    assert attack.run("alpha_engineer", "alpha", NOOP)["status_code"] == 201
    alpha = _ws_id(attack, "alpha")
    with attack.ctx.db.write() as conn:
        conn.execute(update(memberships).where(memberships.c.workspace_id == alpha).values(role="viewer"))
    r = attack.run("alpha_engineer", "alpha", NOOP)
    assert r["status_code"] == 403, r


def test_workspace_role_above_the_user_role_never_raises_it(attack: Attack) -> None:
    alpha = _ws_id(attack, "alpha")
    with attack.ctx.db.write() as conn:
        conn.execute(update(memberships).where(memberships.c.workspace_id == alpha).values(role="admin"))
    p = auth.authenticate_token(attack.ctx, attack.tokens["alpha_viewer"])
    assert p.role == "viewer" and p.role_in(alpha) == "viewer"
    assert attack.run("alpha_viewer", "alpha", NOOP)["status_code"] == 403


def test_workspace_bound_executor_token_is_limited_to_its_workspaces(attack: Attack) -> None:
    beta = _ws_id(attack, "beta")
    assert auth.authenticate_token(attack.ctx, attack.tokens["beta_executor"]).workspace_ids == frozenset({beta})
    # the shared pool has no membership (not even the default workspace) and serves every workspace
    assert auth.authenticate_token(attack.ctx, attack.tokens["executor"]).workspace_ids is None
    with attack.ctx.db.read() as conn:
        uid: int = conn.execute(select(users_table.c.id).where(users_table.c.name == "executor")).scalar_one()
        assert conn.execute(select(memberships).where(memberships.c.user_id == uid)).first() is None


def test_a_promoted_user_is_not_kept_at_the_old_role_by_memberships(attack: Attack) -> None:
    """A viewer promoted to engineer acts as an engineer in its workspace with a new token (its old token
    keeps the role it was minted with as a ceiling); its memberships follow the new role."""
    assert attack.run("alpha_viewer", "alpha", [{"name": "a", "type": "noop"}])["status_code"] == 403
    users.set_role(attack.ctx, ADMIN, "alpha_viewer", "engineer")
    assert attack.run("alpha_viewer", "alpha", [{"name": "a", "type": "noop"}])["status_code"] == 403
    attack.tokens["alpha_viewer"] = auth.create_token(attack.ctx, "alpha_viewer")
    assert attack.run("alpha_viewer", "alpha", [{"name": "a", "type": "noop"}])["status_code"] == 201
