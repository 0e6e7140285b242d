"""User and token administration (admins only): list, create, change role, disable, memberships, tokens."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action, Role
from lakehouse.services import audit, auth, sessions
from lakehouse.services import workspaces as workspace_service
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import users as store
from lakehouse.store.types_public import Connection


def list_users(ctx: Context, actor: Principal) -> list[dict[str, Any]]:
    actor.require(Action.USER_ADMIN)
    with ctx.db.read() as conn:
        rows = store.list_all(conn)
        ms = store.workspace_slugs(conn)
        toks = store.tokens(conn)
    by_user: dict[int, list[str]] = {}
    for uid, slug in ms:
        by_user.setdefault(uid, []).append(slug)
    tokens: dict[int, list[dict[str, Any]]] = {}
    for t in toks:
        tokens.setdefault(t.user_id, []).append(asdict(t))
    return [{**asdict(r), "workspaces": sorted(by_user.get(r.id, [])), "tokens": tokens.get(r.id, [])}
            for r in rows]


def create(ctx: Context, actor: Principal, name: str, role: str, password: str | None,
           address: str | None = None) -> dict[str, Any]:
    actor.require(Action.USER_ADMIN)
    return auth.create_user(ctx, name, role, password or None, actor=actor)


def _user(conn: Connection, name: str) -> store.UserRow:
    row = store.by_name(conn, name)
    if row is None:
        raise NotFound(f"user {name!r} not found", code="user_not_found")
    return row


def set_role(ctx: Context, actor: Principal, name: str, role: str, address: str | None = None) -> None:
    actor.require(Action.USER_ADMIN)
    try:
        role = Role(role).value
    except ValueError:
        raise InvalidInput(f"unknown role {role!r}", code="invalid_role") from None
    with ctx.db.write() as conn:
        row = _user(conn, name)
        if row.name == actor.name and role != Role.ADMIN.value:
            raise Conflict("you cannot take the admin role from yourself", code="self_demotion")
        store.set_role(conn, row.id, role)
        # a membership that carried the old role follows the user (a promoted viewer is not kept a viewer
        # by old memberships); one an admin set to another role keeps it (capped by the new role anyway)
        store.follow_role(conn, row.id, row.role, role)
        sessions.end_user_sessions(conn, row.id)
        audit.record(conn, ctx.clock(), actor, "user.role", "user", name, None,
                     {"from": row.role, "to": role}, address)


def set_disabled(ctx: Context, actor: Principal, name: str, disabled: bool, address: str | None = None) -> None:
    actor.require(Action.USER_ADMIN)
    with ctx.db.write() as conn:
        row = _user(conn, name)
        if row.name == actor.name and disabled:
            raise Conflict("you cannot disable yourself", code="self_disable")
        store.set_disabled(conn, row.id, disabled)
        if disabled:
            sessions.end_user_sessions(conn, row.id)
        audit.record(conn, ctx.clock(), actor, "user.disable" if disabled else "user.enable", "user", name,
                     None, {}, address)


def set_membership(ctx: Context, actor: Principal, name: str, workspace: str, member: bool,
                   address: str | None = None, role: str | None = None) -> None:
    """Add ``name`` to a workspace (with ``role``, capped by their own) or remove them from it."""
    actor.require(Action.USER_ADMIN)
    if member:
        workspace_service.set_member(ctx, actor, workspace, name, role, address)
    else:
        workspace_service.remove_member(ctx, actor, workspace, name, address, missing_ok=True)


def create_token(ctx: Context, actor: Principal, user: str, role: str | None, label: str | None) -> str:
    actor.require(Action.USER_ADMIN)
    return auth.create_token(ctx, user, role or None, label or None, actor=actor)


def revoke_token(ctx: Context, actor: Principal, token_id: int, address: str | None = None) -> None:
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        owner = store.token_owner(conn, token_id)
        if owner is None:
            raise NotFound(f"token {token_id} not found", code="token_not_found")
        prefix, user = owner
        store.revoke_token(conn, token_id, now)
        audit.record(conn, now, actor, "token.revoke", "token", prefix, None, {"user": user}, address)


def list_workspaces(ctx: Context, actor: Principal) -> list[str]:
    actor.require(Action.USER_ADMIN)
    return [w["slug"] for w in workspace_service.list_workspaces(ctx, actor)]
