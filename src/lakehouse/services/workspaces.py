"""Workspaces and environments: every object belongs to one. Admins create workspaces and manage
their members; a membership carries the role the user holds in that workspace, capped by the
user's own role."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, select, update

from lakehouse.domain.roles import Action, Role
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import audit, sessions
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import dialect
from lakehouse.store.tables import environments, memberships, users, workspaces

if TYPE_CHECKING:  # auth creates the default workspace: no import cycle at run time
    from lakehouse.services.auth import Principal

DEFAULT = "default"
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# roles a member may hold in a workspace, weakest first; a user's own role caps them
MEMBER_ROLES = (Role.VIEWER.value, Role.ANALYST.value, Role.ENGINEER.value, Role.ADMIN.value)


def check_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise InvalidInput("a workspace slug has 1-63 lowercase letters, digits, _ or -, starting with a letter "
                           "or digit", code="invalid_slug", details={"field": "slug"})
    return slug


def ensure(conn: Connection, slug: str, now: datetime, name: str | None = None) -> int:
    ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar()
    if ws_id is None:
        dialect.insert_ignore(conn, workspaces, [{"slug": slug, "name": name or slug, "created_at": now}], "slug")
        ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar_one()
        dialect.insert_ignore(conn, environments, [
            {"workspace_id": ws_id, "name": env, "created_at": now} for env in ENVIRONMENTS
        ], "workspace_id", "name")
    return int(ws_id)


def default_id(conn: Connection, now: datetime) -> int:
    return ensure(conn, DEFAULT, now, "Default workspace")


def resolve_for(ctx: Context, principal: object, slug: str, *, write: bool = False) -> int:
    """The id of a workspace the principal may use; unknown or foreign workspaces are 404."""
    from lakehouse.services.auth import Principal

    assert isinstance(principal, Principal)
    with ctx.db.read() as conn:
        ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar()
    if ws_id is None and slug == DEFAULT:
        with ctx.db.write() as conn:
            ws_id = default_id(conn, ctx.clock())
    if ws_id is None or not principal.can_see(int(ws_id)):
        raise NotFound(f"workspace {slug!r} not found", code="workspace_not_found")
    return int(ws_id)


def create(ctx: Context, slug: str, name: str | None = None) -> int:
    """Make sure a workspace exists and return its id (trusted callers: bootstrap, tests); the API,
    CLI and Control Room use ``create_workspace``."""
    check_slug(slug)
    with ctx.db.write() as conn:
        return ensure(conn, slug, ctx.clock(), name)


def create_workspace(ctx: Context, actor: Principal, slug: str, name: str | None = None,
                     address: str | None = None) -> dict[str, Any]:
    """Create a workspace with its environments (admins only); an existing slug is a conflict."""
    actor.require(Action.ADMIN)
    check_slug(slug)
    name = (name or "").strip() or slug
    if len(name) > 200 or not name.isprintable():
        raise InvalidInput("a workspace name is printable text of at most 200 characters", code="invalid_name",
                           details={"field": "name"})
    now = ctx.clock()
    with ctx.db.write() as conn:
        if conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar() is not None:
            raise Conflict(f"workspace {slug!r} already exists", code="workspace_exists")
        ws_id = ensure(conn, slug, now, name)
        audit.record(conn, now, actor, "workspace.create", "workspace", slug, ws_id, {"name": name}, address)
        row = conn.execute(select(workspaces).where(workspaces.c.id == ws_id)).mappings().one()
    return _render(row, actor)


def _render(row: Any, actor: Principal, members: int | None = None) -> dict[str, Any]:
    return {"slug": row["slug"], "name": row["name"], "created_at": row["created_at"],
            "role": actor.role_in(row["id"]), "members": members}


def list_workspaces(ctx: Context, actor: Principal) -> list[dict[str, Any]]:
    """The workspaces the actor may see (all of them for admins), each with the actor's role there
    and, for user admins, its member count."""
    actor.require(Action.READ)
    with ctx.db.read() as conn:
        rows = conn.execute(select(workspaces).order_by(workspaces.c.slug)).mappings().all()
        counts = {int(r[0]): int(r[1]) for r in conn.execute(
            select(memberships.c.workspace_id, func.count()).group_by(memberships.c.workspace_id)).all()}
    admin = actor.can(Action.USER_ADMIN)
    return [_render(r, actor, counts.get(r["id"], 0) if admin else None)
            for r in rows if actor.can_see(r["id"])]


def effective_role(member_role: str | None, user_role: str) -> str:
    """The role a member acts with in a workspace: the membership's role capped by the user's own."""
    if member_role is None or user_role not in MEMBER_ROLES or member_role not in MEMBER_ROLES:
        return user_role
    return MEMBER_ROLES[min(MEMBER_ROLES.index(member_role), MEMBER_ROLES.index(user_role))]


def _member_role(role: str | None, user_role: str) -> str:
    """Check a requested membership role against the user's own role (executors only hold theirs)."""
    if user_role == Role.EXECUTOR.value:
        if role not in (None, Role.EXECUTOR.value):
            raise InvalidInput("an executor account holds the executor role in its workspaces",
                               code="invalid_role", details={"field": "role"})
        return user_role
    if role is None:
        return user_role
    if role not in MEMBER_ROLES:
        raise InvalidInput(f"unknown workspace role {role!r}; use one of {', '.join(MEMBER_ROLES)}",
                           code="invalid_role", details={"field": "role"})
    if MEMBER_ROLES.index(role) > MEMBER_ROLES.index(user_role):
        raise InvalidInput(f"{role} is above the user's own role ({user_role}), which caps their role in a workspace",
                           code="role_above_user", details={"field": "role"})
    return role


def _workspace_id(conn: Connection, slug: str) -> int:
    ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar()
    if ws_id is None:
        raise NotFound(f"workspace {slug!r} not found", code="workspace_not_found")
    return int(ws_id)


def _user(conn: Connection, name: str) -> Any:
    row = conn.execute(select(users.c.id, users.c.name, users.c.role, users.c.disabled)
                       .where(users.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"user {name!r} not found", code="user_not_found")
    return row


def _member(slug: str, user: Any, role: str | None) -> dict[str, Any]:
    return {"workspace": slug, "user": user["name"], "role": role or user["role"], "user_role": user["role"],
            "effective_role": effective_role(role, user["role"]), "disabled": bool(user["disabled"])}


def members(ctx: Context, actor: Principal, slug: str) -> list[dict[str, Any]]:
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        ws_id = _workspace_id(conn, slug)
        rows = conn.execute(select(users.c.name, users.c.role, users.c.disabled, memberships.c.role.label("m_role"))
                            .join(memberships, memberships.c.user_id == users.c.id)
                            .where(memberships.c.workspace_id == ws_id).order_by(users.c.name)).mappings().all()
    return [_member(slug, r, r["m_role"]) for r in rows]


def all_members(ctx: Context, actor: Principal) -> dict[str, list[dict[str, Any]]]:
    """Every workspace's members by slug (the Control Room's workspace page)."""
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        rows = conn.execute(select(workspaces.c.slug, users.c.name, users.c.role, users.c.disabled,
                                   memberships.c.role.label("m_role"))
                            .join(memberships, memberships.c.workspace_id == workspaces.c.id)
                            .join(users, users.c.id == memberships.c.user_id)
                            .order_by(workspaces.c.slug, users.c.name)).mappings().all()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["slug"], []).append(_member(r["slug"], r, r["m_role"]))
    return out


def get_member(ctx: Context, actor: Principal, slug: str, user: str) -> dict[str, Any]:
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        m = conn.execute(select(memberships.c.role).where(memberships.c.workspace_id == ws_id,
                                                          memberships.c.user_id == row["id"])).first()
    if m is None:
        raise NotFound(f"{user!r} is not a member of {slug!r}", code="member_not_found")
    return _member(slug, row, m[0])


def set_member(ctx: Context, actor: Principal, slug: str, user: str, role: str | None = None,
               address: str | None = None) -> tuple[dict[str, Any], bool]:
    """Add a member or change their role; without a role a new member gets their own role and an
    existing one keeps theirs. Returns the membership and whether it is new. The user's sessions end."""
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        current = conn.execute(select(memberships.c.role).where(memberships.c.workspace_id == ws_id,
                                                                memberships.c.user_id == row["id"])).first()
        if role is None and current is not None:
            role = current[0]
        role = _member_role(role, row["role"])
        if current is None:
            conn.execute(memberships.insert().values(workspace_id=ws_id, user_id=row["id"], role=role))
            audit.record(conn, now, actor, "membership.add", "user", user, ws_id, {"workspace": slug, "role": role},
                         address)
        elif current[0] != role:
            conn.execute(update(memberships).where(memberships.c.workspace_id == ws_id,
                                                   memberships.c.user_id == row["id"]).values(role=role))
            audit.record(conn, now, actor, "membership.role", "user", user, ws_id,
                         {"workspace": slug, "from": current[0], "to": role}, address)
        sessions.end_user_sessions(conn, row["id"])
    return _member(slug, row, role), current is None


def remove_member(ctx: Context, actor: Principal, slug: str, user: str, address: str | None = None,
                  *, missing_ok: bool = False) -> None:
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        gone = conn.execute(delete(memberships).where(memberships.c.workspace_id == ws_id,
                                                      memberships.c.user_id == row["id"])).rowcount
        if not gone and not missing_ok:
            raise NotFound(f"{user!r} is not a member of {slug!r}", code="member_not_found")
        if gone:
            audit.record(conn, now, actor, "membership.remove", "user", user, ws_id, {"workspace": slug}, address)
        sessions.end_user_sessions(conn, row["id"])
