"""Statements of ``workspaces``, ``environments`` and ``memberships`` (services/workspaces.py keeps the
rules: slugs, the roles a member may hold, who may see what)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, select, update

from lakehouse.store import dialect
from lakehouse.store.scope import visible
from lakehouse.store.tables import environments, memberships, users, workspaces


@dataclass(frozen=True)
class WorkspaceRow:
    id: int
    slug: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class MemberRow:
    workspace: str  # the workspace's slug
    user: str
    user_role: str  # the user's own role
    disabled: bool
    role: str | None  # the membership's role (None: the user's own)


@dataclass(frozen=True)
class Membership:
    role: str | None


def id_of(conn: Connection, slug: str) -> int | None:
    ws_id = conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar()
    return None if ws_id is None else int(ws_id)


def insert_ignore(conn: Connection, slug: str, name: str, now: datetime) -> int:
    """Insert a workspace unless its slug exists (a concurrent insert wins quietly); its id."""
    dialect.insert_ignore(conn, workspaces, [{"slug": slug, "name": name, "created_at": now}], "slug")
    return int(conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).scalar_one())


def add_environments(conn: Connection, workspace_id: int, names: Iterable[str], now: datetime) -> None:
    """Insert the environments of a workspace that it does not have yet."""
    dialect.insert_ignore(conn, environments, [
        {"workspace_id": workspace_id, "name": env, "created_at": now} for env in names
    ], "workspace_id", "name")


def get(conn: Connection, workspace_id: int) -> WorkspaceRow:
    r = conn.execute(select(workspaces).where(workspaces.c.id == workspace_id)).mappings().one()
    return WorkspaceRow(id=int(r["id"]), slug=r["slug"], name=r["name"], created_at=r["created_at"])


def list_all(conn: Connection) -> list[WorkspaceRow]:
    """Every workspace, by slug."""
    return [WorkspaceRow(id=int(r["id"]), slug=r["slug"], name=r["name"], created_at=r["created_at"])
            for r in conn.execute(select(workspaces).order_by(workspaces.c.slug)).mappings()]


def visible_slugs(conn: Connection, workspace_ids: Collection[int] | None) -> list[str]:
    """The slugs of the visible workspaces, in order."""
    stmt = visible(select(workspaces.c.slug), workspaces.c.id, workspace_ids).order_by(workspaces.c.slug)
    found: list[Any] = list(conn.execute(stmt).scalars())
    return [str(slug) for slug in found]


def member_counts(conn: Connection) -> dict[int, int]:
    """workspace id → number of members (workspaces without members are absent)."""
    return {int(r[0]): int(r[1]) for r in conn.execute(
        select(memberships.c.workspace_id, func.count()).group_by(memberships.c.workspace_id)).all()}


def _members_stmt() -> Select[Any]:
    return (select(workspaces.c.slug, users.c.name, users.c.role, users.c.disabled, memberships.c.role.label("m_role"))
            .join(memberships, memberships.c.workspace_id == workspaces.c.id)
            .join(users, users.c.id == memberships.c.user_id))


def members(conn: Connection, workspace_id: int | None = None) -> list[MemberRow]:
    """The members of one workspace (by user name), or of every workspace (by slug, then user name)."""
    stmt = _members_stmt()
    if workspace_id is not None:
        stmt = stmt.where(memberships.c.workspace_id == workspace_id)
    rows = conn.execute(stmt.order_by(workspaces.c.slug, users.c.name)).mappings()
    return [MemberRow(workspace=r["slug"], user=r["name"], user_role=r["role"], disabled=bool(r["disabled"]),
                      role=r["m_role"]) for r in rows]


def membership(conn: Connection, workspace_id: int, user_id: int) -> Membership | None:
    """The user's membership of the workspace; None when they are not a member."""
    row = conn.execute(select(memberships.c.role).where(memberships.c.workspace_id == workspace_id,
                                                        memberships.c.user_id == user_id)).first()
    return None if row is None else Membership(role=row[0])


def add_member(conn: Connection, workspace_id: int, user_id: int, role: str | None) -> None:
    conn.execute(memberships.insert().values(workspace_id=workspace_id, user_id=user_id, role=role))


def set_member_role(conn: Connection, workspace_id: int, user_id: int, role: str | None) -> None:
    conn.execute(update(memberships).where(memberships.c.workspace_id == workspace_id,
                                           memberships.c.user_id == user_id).values(role=role))


def remove_member(conn: Connection, workspace_id: int, user_id: int) -> bool:
    """Delete the membership; whether there was one."""
    res = conn.execute(delete(memberships).where(memberships.c.workspace_id == workspace_id,
                                                 memberships.c.user_id == user_id))
    return bool(res.rowcount)
