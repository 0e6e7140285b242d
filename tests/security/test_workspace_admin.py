"""Workspace administration: only admins create workspaces and manage members; a member's role in a
workspace never exceeds their own; every change is audited and takes effect at once."""

from __future__ import annotations

from sqlalchemy import select

from lakehouse.store.tables import audit_log, memberships, users, workspaces
from tests.security.conftest import Attack

NOOP = [{"name": "p", "type": "noop"}]


def _slugs(attack: Attack) -> set[str]:
    with attack.ctx.db.read() as conn:
        return set(conn.execute(select(workspaces.c.slug)).scalars())


def _member_role(attack: Attack, slug: str, user: str) -> str | None:
    with attack.ctx.db.read() as conn:
        return conn.execute(select(memberships.c.role)
                            .join(workspaces, workspaces.c.id == memberships.c.workspace_id)
                            .join(users, users.c.id == memberships.c.user_id)
                            .where(workspaces.c.slug == slug, users.c.name == user)).scalar()


def test_engineer_cannot_create_a_workspace(attack: Attack) -> None:
    for who in ("alpha_engineer", "alpha_analyst", "beta_viewer", "executor"):
        r = attack.client.post("/api/workspaces", headers=attack.headers(who), json={"slug": f"{who}-ws"})
        assert r.status_code == 403, (who, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    assert _slugs(attack) == {"default", "alpha", "beta"}


def test_admin_creates_a_workspace_over_the_api(attack: Attack) -> None:
    r = attack.client.post("/api/workspaces", headers=attack.headers("admin"),
                           json={"slug": "gamma", "name": "Gamma team"})
    assert r.status_code == 201, r.text
    assert r.json()["slug"] == "gamma" and r.json()["name"] == "Gamma team"
    again = attack.client.post("/api/workspaces", headers=attack.headers("admin"), json={"slug": "gamma"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "workspace_exists"
    run = attack.run("admin", "gamma", NOOP)
    assert run["status_code"] == 201 and run["environment"] == "dev"


def test_workspace_slug_that_is_a_path_or_markup_is_refused(attack: Attack) -> None:
    for slug in ("../alpha", "Alpha", "a b", "<script>", "-x", "a" * 64, "al/pha", "é"):
        r = attack.client.post("/api/workspaces", headers=attack.headers("admin"), json={"slug": slug})
        assert r.status_code == 422, slug
        assert r.json()["error"]["code"] in ("invalid_slug", "validation_error")
    assert _slugs(attack) == {"default", "alpha", "beta"}


def test_workspace_list_shows_a_member_only_its_own(attack: Attack) -> None:
    r = attack.client.get("/api/workspaces", headers=attack.headers("alpha_viewer"))
    assert r.status_code == 200
    assert [(w["slug"], w["role"], w["members"]) for w in r.json()["workspaces"]] == [("alpha", "viewer", None)]
    admin = attack.client.get("/api/workspaces", headers=attack.headers("admin")).json()["workspaces"]
    counts = {w["slug"]: w["members"] for w in admin}
    assert set(counts) == {"alpha", "beta", "default"}
    assert (counts["alpha"], counts["beta"]) == (3, 4)  # beta also has its bound executor


def test_member_adds_itself_to_a_foreign_workspace(attack: Attack) -> None:
    url = "/api/workspaces/beta/members/alpha_engineer"
    r = attack.client.put(url, headers=attack.headers("alpha_engineer"), json={"role": "engineer"})
    assert r.status_code == 403
    assert _member_role(attack, "beta", "alpha_engineer") is None
    assert attack.client.get(url, headers=attack.headers("alpha_engineer")).status_code == 403
    assert attack.client.get("/api/workspaces/beta/members", headers=attack.headers("beta_engineer")
                             ).status_code == 403
    r = attack.client.delete("/api/workspaces/alpha/members/alpha_viewer", headers=attack.headers("alpha_engineer"))
    assert r.status_code == 403
    assert _member_role(attack, "alpha", "alpha_viewer") == "viewer"


def test_workspace_role_above_the_users_own_role_is_refused(attack: Attack) -> None:
    url = "/api/workspaces/alpha/members/alpha_viewer"
    r = attack.client.put(url, headers=attack.headers("admin"), json={"role": "admin"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "role_above_user"
    assert r.json()["error"]["details"] == {"field": "role"}
    r = attack.client.put("/api/workspaces/beta/members/beta_executor", headers=attack.headers("admin"),
                          json={"role": "engineer"})
    assert r.status_code == 422
    assert _member_role(attack, "alpha", "alpha_viewer") == "viewer"


def test_engineer_demoted_to_viewer_in_one_workspace_cannot_start_runs_there(attack: Attack) -> None:
    assert attack.run("alpha_engineer", "alpha", NOOP)["status_code"] == 201
    r = attack.client.put("/api/workspaces/alpha/members/alpha_engineer", headers=attack.headers("admin"),
                          json={"role": "viewer"})
    assert r.status_code == 200, r.text
    assert r.json() == {"workspace": "alpha", "user": "alpha_engineer", "role": "viewer", "user_role": "engineer",
                        "effective_role": "viewer", "disabled": False}
    run = attack.run("alpha_engineer", "alpha", NOOP)
    assert run["status_code"] == 403, run


def test_removed_member_keeps_reading_the_workspace(attack: Attack) -> None:
    run = attack.run("beta_engineer", "beta", NOOP)
    assert attack.client.get(f"/ops/runs/{run['run_id']}", headers=attack.headers("beta_analyst")).status_code == 200
    r = attack.client.delete("/api/workspaces/beta/members/beta_analyst", headers=attack.headers("admin"))
    assert r.status_code == 204
    assert attack.client.get(f"/ops/runs/{run['run_id']}", headers=attack.headers("beta_analyst")).status_code == 404
    assert attack.client.get("/api/workspaces", headers=attack.headers("beta_analyst")).json() == {"workspaces": []}
    again = attack.client.delete("/api/workspaces/beta/members/beta_analyst", headers=attack.headers("admin"))
    assert again.status_code == 404 and again.json()["error"]["code"] == "member_not_found"


def test_workspace_administration_leaves_an_audit_trail(attack: Attack) -> None:
    admin = attack.headers("admin")
    assert attack.client.post("/api/workspaces", headers=admin, json={"slug": "gamma"}).status_code == 201
    r = attack.client.put("/api/workspaces/gamma/members/alpha_analyst", headers=admin, json={"role": "viewer"})
    assert r.status_code == 201
    assert attack.client.put("/api/workspaces/gamma/members/alpha_analyst", headers=admin,
                             json={"role": "analyst"}).status_code == 200
    assert attack.client.get("/api/workspaces/gamma/members/alpha_analyst", headers=admin).json()["role"] == "analyst"
    assert attack.client.delete("/api/workspaces/gamma/members/alpha_analyst", headers=admin).status_code == 204
    with attack.ctx.db.read() as conn:
        trail = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.object_id, audit_log.c.details)
                             .where(audit_log.c.action.in_(("workspace.create", "membership.add", "membership.role",
                                                            "membership.remove")),
                                    audit_log.c.actor == "admin")
                             .order_by(audit_log.c.id)).all()
    assert [(a, act, obj) for a, act, obj, _ in trail] == [
        ("admin", "workspace.create", "gamma"), ("admin", "membership.add", "alpha_analyst"),
        ("admin", "membership.role", "alpha_analyst"), ("admin", "membership.remove", "alpha_analyst")]
    assert trail[2][3] == {"workspace": "gamma", "from": "viewer", "to": "analyst"}


def test_a_read_only_member_cannot_resolve_a_workspace_for_writing(attack: Attack) -> None:
    """At the service level, not only over HTTP: an engineer who is only a viewer in alpha gets alpha
    for reading and a 403 for writing; a foreign workspace stays a 404 either way."""
    import pytest

    from lakehouse.domain.principal import Principal
    from lakehouse.services import workspaces as ws_service
    from lakehouse.services.errors import Forbidden, NotFound

    ctx = attack.ctx
    alpha = ws_service.resolve_for(ctx, Principal(name="admin", role="admin"), "alpha")
    member = Principal(name="eve", role="engineer", workspace_ids=frozenset({alpha}),
                       workspace_roles=((alpha, "viewer"),))
    assert ws_service.resolve_for(ctx, member, "alpha") == alpha
    with pytest.raises(Forbidden, match="may only read"):
        ws_service.resolve_for(ctx, member, "alpha", write=True)
    engineer = Principal(name="eve", role="engineer", workspace_ids=frozenset({alpha}))
    assert ws_service.resolve_for(ctx, engineer, "alpha", write=True) == alpha
    for who in (member, engineer):
        with pytest.raises(NotFound):
            ws_service.resolve_for(ctx, who, "beta", write=True)
