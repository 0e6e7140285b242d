"""Workspaces and environments: every object belongs to one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services.context import Context
from lakehouse.services.errors import NotFound
from lakehouse.store import dialect
from lakehouse.store.tables import environments, workspaces

DEFAULT = "default"


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
    with ctx.db.write() as conn:
        return ensure(conn, slug, ctx.clock(), name)
