"""Statements of the dataset registry (``datasets``); services/datasets.py keeps the rules.

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, or_, select, update

from lakehouse.store import dialect
from lakehouse.store.scope import visible
from lakehouse.store.tables import datasets as ds
from lakehouse.store.tables import workspaces as ws_table

_COLUMNS = (ds, ws_table.c.slug.label("workspace"))


def get(conn: Connection, workspace_id: int, environment: str, name: str) -> RowMapping | None:
    stmt = (select(*_COLUMNS).join(ws_table, ws_table.c.id == ds.c.workspace_id)
            .where(ds.c.workspace_id == workspace_id, ds.c.environment == environment, ds.c.name == name))
    return conn.execute(stmt).mappings().first()


def insert(conn: Connection, *, workspace_id: int, environment: str, name: str, location: str, origin: str,
           created_by: str, now: datetime, owner: str | None = None, description: str = "",
           tags: list[str] | None = None, fmt: str = "iceberg") -> bool:
    """Insert a dataset unless one of that name exists in the workspace and environment; True when inserted."""
    row = {"workspace_id": workspace_id, "environment": environment, "name": name, "owner": owner,
           "description": description, "tags": sorted(set(tags or [])), "location": location, "format": fmt,
           "origin": origin, "created_by": created_by, "created_at": now, "updated_at": now}
    return bool(dialect.insert_ignore(conn, ds, [row], "workspace_id", "environment", "name"))


def published(conn: Connection, *, workspace_id: int, environment: str, name: str, run_id: str,
              snapshot_id: int | None, rows: int | None, owner: str | None, created_by: str, now: datetime) -> None:
    """Record a publish of a table: registers it (origin ``pipeline``) the first time, and keeps its
    owner, description and tags afterwards (an owner is only filled in when there was none)."""
    insert(conn, workspace_id=workspace_id, environment=environment, name=name, location="", origin="pipeline",
           created_by=created_by, now=now, owner=owner)
    where = (ds.c.workspace_id == workspace_id, ds.c.environment == environment, ds.c.name == name)
    conn.execute(update(ds).where(*where).values(last_run_id=run_id, snapshot_id=snapshot_id, rows=rows,
                                                 published_at=now, updated_at=now))
    if owner:
        conn.execute(update(ds).where(*where, ds.c.owner.is_(None)).values(owner=owner))


def update_meta(conn: Connection, dataset_id: int, now: datetime, **values: Any) -> None:
    """Change owner / description / tags / location (only the keys given)."""
    allowed = {k: v for k, v in values.items() if k in ("owner", "description", "tags", "location")}
    conn.execute(update(ds).where(ds.c.id == dataset_id).values(**allowed, updated_at=now))


def search(conn: Connection, workspace_ids: Collection[int] | None, *, workspace_id: int | None = None,
           environment: str | None = None, text: str | None = None, owner: str | None = None,
           limit: int = 1000) -> list[RowMapping]:
    """Datasets by name or description substring (case-insensitive) and owner, by name; tags are
    filtered by the caller (a JSON list is not portable SQL)."""
    stmt = select(*_COLUMNS).join(ws_table, ws_table.c.id == ds.c.workspace_id)
    stmt = visible(stmt, ds.c.workspace_id, workspace_ids)
    if workspace_id is not None:
        stmt = stmt.where(ds.c.workspace_id == workspace_id)
    if environment:
        stmt = stmt.where(ds.c.environment == environment)
    if text:
        needle = f"%{text.lower()}%"
        stmt = stmt.where(or_(func.lower(ds.c.name).like(needle), func.lower(ds.c.description).like(needle)))
    if owner:
        stmt = stmt.where(ds.c.owner == owner)
    stmt = stmt.order_by(ws_table.c.slug, ds.c.environment, ds.c.name).limit(limit)
    return list(conn.execute(stmt).mappings())
