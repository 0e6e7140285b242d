"""Workspaces and environments: every object belongs to one. Admins create workspaces and manage
their members; a membership carries the role the user holds in that workspace, capped by the
user's own role."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action, Role
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import audit
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from lakehouse.store import sessions as session_store
from lakehouse.store import users as user_store
from lakehouse.store import workspaces as store
from lakehouse.store.types_public import Connection

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
    """The id of the workspace ``slug``, created with every environment when it does not exist."""
    ws_id = store.id_of(conn, slug)
    if ws_id is None:
        ws_id = store.insert_ignore(conn, slug, name or slug, now)
        store.add_environments(conn, ws_id, ENVIRONMENTS, now)
    return ws_id


def default_id(conn: Connection, now: datetime) -> int:
    return ensure(conn, DEFAULT, now, "Default workspace")


# what ``resolve_for(write=True)`` asks of a role in the workspace: one action that changes something
WRITE_ACTIONS = frozenset(Action) - {Action.READ, Action.RUN_READ, Action.QUERY, Action.CONNECTION_READ,
                                     Action.AUDIT_VIEW}

def resolve_for(ctx: Context, principal: Principal, slug: str, *, write: bool = False) -> int:
    """The id of a workspace the principal may use; unknown or foreign workspaces are 404. With
    ``write``, a role that may only read there (viewer, analyst) is refused (403) before anything is
    looked up further; the caller still checks its own action with ``require_in``."""
    with ctx.db.read() as conn:
        ws_id = store.id_of(conn, slug)
    if ws_id is None and slug == DEFAULT:
        with ctx.db.write() as conn:
            ws_id = default_id(conn, ctx.clock())
    if ws_id is None or not principal.can_see(ws_id):
        raise NotFound(f"workspace {slug!r} not found", code="workspace_not_found")
    if write and not any(principal.can_in(a, ws_id) for a in WRITE_ACTIONS):
        raise Forbidden(f"role {principal.role_in(ws_id)} may only read in workspace {slug!r}", code="forbidden")
    return ws_id


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
        if store.id_of(conn, slug) is not None:
            raise Conflict(f"workspace {slug!r} already exists", code="workspace_exists")
        ws_id = ensure(conn, slug, now, name)
        audit.record(conn, now, actor, "workspace.create", "workspace", slug, ws_id, {"name": name}, address)
        row = store.get(conn, ws_id)
    return _render(row, actor)


def _render(row: store.WorkspaceRow, actor: Principal, members: int | None = None) -> dict[str, Any]:
    return {"slug": row.slug, "name": row.name, "created_at": row.created_at,
            "role": actor.role_in(row.id), "members": members}


def list_workspaces(ctx: Context, actor: Principal) -> list[dict[str, Any]]:
    """The workspaces the actor may see (all of them for admins), each with the actor's role there
    and, for user admins, its member count."""
    actor.require(Action.READ)
    with ctx.db.read() as conn:
        rows = store.list_all(conn)
        counts = store.member_counts(conn)
    admin = actor.can(Action.USER_ADMIN)
    return [_render(r, actor, counts.get(r.id, 0) if admin else None)
            for r in rows if actor.can_see(r.id)]


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
    ws_id = store.id_of(conn, slug)
    if ws_id is None:
        raise NotFound(f"workspace {slug!r} not found", code="workspace_not_found")
    return ws_id


def _user(conn: Connection, name: str) -> user_store.UserRow:
    row = user_store.by_name(conn, name)
    if row is None:
        raise NotFound(f"user {name!r} not found", code="user_not_found")
    return row


def _member(slug: str, name: str, user_role: str, disabled: bool, role: str | None) -> dict[str, Any]:
    return {"workspace": slug, "user": name, "role": role or user_role, "user_role": user_role,
            "effective_role": effective_role(role, user_role), "disabled": disabled}


def _member_of(slug: str, user: user_store.UserRow, role: str | None) -> dict[str, Any]:
    return _member(slug, user.name, user.role, user.disabled, role)


def _listed(m: store.MemberRow) -> dict[str, Any]:
    return _member(m.workspace, m.user, m.user_role, m.disabled, m.role)


def members(ctx: Context, actor: Principal, slug: str) -> list[dict[str, Any]]:
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        rows = store.members(conn, _workspace_id(conn, slug))
    return [_listed(m) for m in rows]


def all_members(ctx: Context, actor: Principal) -> dict[str, list[dict[str, Any]]]:
    """Every workspace's members by slug (the Control Room's workspace page)."""
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        rows = store.members(conn)
    out: dict[str, list[dict[str, Any]]] = {}
    for m in rows:
        out.setdefault(m.workspace, []).append(_listed(m))
    return out


def get_member(ctx: Context, actor: Principal, slug: str, user: str) -> dict[str, Any]:
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        m = store.membership(conn, ws_id, row.id)
    if m is None:
        raise NotFound(f"{user!r} is not a member of {slug!r}", code="member_not_found")
    return _member_of(slug, row, m.role)


def set_member(ctx: Context, actor: Principal, slug: str, user: str, role: str | None = None,
               address: str | None = None) -> tuple[dict[str, Any], bool]:
    """Add a member or change their role; without a role a new member gets their own role and an
    existing one keeps theirs. Returns the membership and whether it is new. The user's sessions end."""
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        current = store.membership(conn, ws_id, row.id)
        if role is None and current is not None:
            role = current.role
        role = _member_role(role, row.role)
        if current is None:
            store.add_member(conn, ws_id, row.id, role)
            audit.record(conn, now, actor, "membership.add", "user", user, ws_id, {"workspace": slug, "role": role},
                         address)
        elif current.role != role:
            store.set_member_role(conn, ws_id, row.id, role)
            audit.record(conn, now, actor, "membership.role", "user", user, ws_id,
                         {"workspace": slug, "from": current.role, "to": role}, address)
        session_store.end_user_sessions(conn, row.id)  # the user's sessions end
    return _member_of(slug, row, role), current is None


def remove_member(ctx: Context, actor: Principal, slug: str, user: str, address: str | None = None,
                  *, missing_ok: bool = False) -> None:
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        ws_id = _workspace_id(conn, slug)
        row = _user(conn, user)
        gone = store.remove_member(conn, ws_id, row.id)
        if not gone and not missing_ok:
            raise NotFound(f"{user!r} is not a member of {slug!r}", code="member_not_found")
        if gone:
            audit.record(conn, now, actor, "membership.remove", "user", user, ws_id, {"workspace": slug}, address)
        session_store.end_user_sessions(conn, row.id)  # the user's sessions end
