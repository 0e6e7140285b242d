"""Statements of ``users`` and ``api_tokens`` for their administration (services/users.py keeps the
rules: who may change what). Password hashes and token hashes never leave this module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from lakehouse.store.tables import api_tokens, memberships, users, workspaces


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenRow:
    id: int
    user_id: int
    prefix: str
    role: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None


def _user(r: Any) -> UserRow:
    return UserRow(id=int(r["id"]), name=r["name"], role=r["role"], disabled=bool(r["disabled"]),
                   created_at=r["created_at"])


_USER_COLUMNS = (users.c.id, users.c.name, users.c.role, users.c.disabled, users.c.created_at)


def by_name(conn: Connection, name: str) -> UserRow | None:
    row = conn.execute(select(*_USER_COLUMNS).where(users.c.name == name)).mappings().first()
    return None if row is None else _user(row)


def list_all(conn: Connection) -> list[UserRow]:
    """Every user, by name."""
    return [_user(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(users.c.name)).mappings()]


def workspace_slugs(conn: Connection) -> list[tuple[int, str]]:
    """(user id, workspace slug) of every membership."""
    rows = conn.execute(select(memberships.c.user_id, workspaces.c.slug)
                        .join(workspaces, workspaces.c.id == memberships.c.workspace_id)).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def tokens(conn: Connection, user_id: int | None = None) -> list[TokenRow]:
    """Every API token (without its hash), or every token of one user, newest first."""
    t = api_tokens
    stmt = select(t.c.id, t.c.user_id, t.c.prefix, t.c.role, t.c.name, t.c.created_at, t.c.revoked_at, t.c.expires_at)
    if user_id is not None:
        stmt = stmt.where(t.c.user_id == user_id)
    rows = conn.execute(stmt.order_by(t.c.id.desc())).mappings()
    return [TokenRow(id=int(r["id"]), user_id=int(r["user_id"]), prefix=r["prefix"], role=r["role"], name=r["name"],
                     created_at=r["created_at"], revoked_at=r["revoked_at"], expires_at=r["expires_at"]) for r in rows]


def set_role(conn: Connection, user_id: int, role: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(role=role))


def follow_role(conn: Connection, user_id: int, old: str, new: str) -> int:
    """Memberships that held the user's old global role (they were not set apart) take the new one."""
    res = conn.execute(update(memberships).where(memberships.c.user_id == user_id, memberships.c.role == old)
                       .values(role=new))
    return int(res.rowcount or 0)


def set_disabled(conn: Connection, user_id: int, disabled: bool) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))


def token_owner(conn: Connection, token_id: int) -> tuple[str, str] | None:
    """(token prefix, owner's user name) of a token; None when there is no such token."""
    row = conn.execute(select(api_tokens.c.prefix, users.c.name).join(users, users.c.id == api_tokens.c.user_id)
                       .where(api_tokens.c.id == token_id)).first()
    return None if row is None else (str(row[0]), str(row[1]))


def revoke_token(conn: Connection, token_id: int, now: datetime) -> None:
    """Revoke a token unless it is revoked already (the first revocation time stays)."""
    conn.execute(update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                 .values(revoked_at=now))
