"""Statements of the ``connections`` table (services/connections.py keeps the rules and the secrets).

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
``secrets_enc`` is the Fernet token as stored: only the service decrypts it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, select, update

from lakehouse.store.scope import visible
from lakehouse.store.tables import connections
from lakehouse.store.tables import workspaces as ws_table


@dataclass(frozen=True)
class ConnectionRow:
    id: int
    workspace_id: int
    workspace: str  # the workspace's slug
    environment: str
    name: str
    type: str
    config: dict[str, Any]
    secrets_enc: str | None
    secret_keys: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_message: str | None


def _row(r: Any) -> ConnectionRow:
    return ConnectionRow(
        id=int(r["id"]), workspace_id=int(r["workspace_id"]), workspace=r["workspace"], environment=r["environment"],
        name=r["name"], type=r["type"], config=dict(r["config"] or {}), secrets_enc=r["secrets_enc"],
        secret_keys=list(r["secret_keys"] or []), created_by=r["created_by"], created_at=r["created_at"],
        updated_at=r["updated_at"], last_test_at=r["last_test_at"], last_test_ok=r["last_test_ok"],
        last_test_message=r["last_test_message"])


def _scoped(workspace_ids: Collection[int] | None) -> Select[Any]:
    stmt = select(connections, ws_table.c.slug.label("workspace")).join(
        ws_table, ws_table.c.id == connections.c.workspace_id)
    return visible(stmt, connections.c.workspace_id, workspace_ids)


def list_visible(conn: Connection, workspace_ids: Collection[int] | None,
                 environment: str | None = None) -> list[ConnectionRow]:
    """Connections of the visible workspaces, by workspace slug, environment and name."""
    stmt = _scoped(workspace_ids)
    if environment:
        stmt = stmt.where(connections.c.environment == environment)
    stmt = stmt.order_by(ws_table.c.slug, connections.c.environment, connections.c.name)
    return [_row(r) for r in conn.execute(stmt).mappings()]


def get_visible(conn: Connection, workspace_ids: Collection[int] | None, conn_id: int) -> ConnectionRow | None:
    row = conn.execute(_scoped(workspace_ids).where(connections.c.id == conn_id)).mappings().first()
    return _row(row) if row is not None else None


def insert(conn: Connection, *, workspace_id: int, environment: str, name: str, type_: str, config: dict[str, Any],
           secrets_enc: str | None, secret_keys: list[str], created_by: str, now: datetime) -> int:
    """Insert one connection; its id. A name taken in the workspace and environment raises
    ``IntegrityError`` (the unique constraint)."""
    return int(conn.execute(connections.insert().values(
        workspace_id=workspace_id, environment=environment, name=name, type=type_, config=config,
        secrets_enc=secrets_enc, secret_keys=secret_keys, created_by=created_by, created_at=now, updated_at=now,
    ).returning(connections.c.id)).scalar_one())


def update_settings(conn: Connection, conn_id: int, *, config: dict[str, Any], secrets_enc: str | None,
                    secret_keys: list[str], now: datetime) -> None:
    """New settings and secrets; the last test result is cleared (it tested the old ones)."""
    conn.execute(update(connections).where(connections.c.id == conn_id).values(
        config=config, secrets_enc=secrets_enc, secret_keys=secret_keys, updated_at=now,
        last_test_at=None, last_test_ok=None, last_test_message=None))


def record_test(conn: Connection, conn_id: int, *, at: datetime, ok: bool, message: str) -> None:
    conn.execute(update(connections).where(connections.c.id == conn_id).values(
        last_test_at=at, last_test_ok=ok, last_test_message=message))


def delete_one(conn: Connection, conn_id: int) -> None:
    conn.execute(delete(connections).where(connections.c.id == conn_id))


def encrypted_secrets(conn: Connection) -> list[tuple[int, str]]:
    """(id, secrets_enc) of every connection that has secrets, in every workspace."""
    rows = conn.execute(select(connections.c.id, connections.c.secrets_enc)
                        .where(connections.c.secrets_enc.is_not(None))).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def set_secrets_enc(conn: Connection, conn_id: int, token: str) -> None:
    conn.execute(update(connections).where(connections.c.id == conn_id).values(secrets_enc=token))
