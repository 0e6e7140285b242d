"""Statements of authentication: who a token, a password login or a session belongs to, read from the
user's current row and memberships on every call, and the credentials (password hashes, token hashes)
that services/auth.py and services/sessions.py check. services/auth.py keeps the rules (hashing, role
capping, what a principal may do); user administration is in store/users.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, select, update

from lakehouse.store.tables import api_tokens, memberships, users


@dataclass(frozen=True)
class Identity:
    """A user as a principal is built from: the current role, whether disabled, every membership
    (workspace id, the membership's role or None)."""

    user_id: int
    name: str
    role: str
    disabled: bool
    memberships: tuple[tuple[int, str | None], ...]


@dataclass(frozen=True)
class TokenGrant:
    identity: Identity
    role: str  # the token's own role
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Credentials:
    identity: Identity
    password_hash: str | None


def identity_query(*columns: Any) -> Select[Any]:
    """users LEFT JOIN memberships: one row per membership (one with NULLs without any), so that an
    identity is read in one query. ``columns`` are selected too (for the caller's own join)."""
    return (select(*columns, users.c.id, users.c.name, users.c.role, users.c.disabled,
                   memberships.c.workspace_id.label("ws_id"), memberships.c.role.label("ws_role"))
            .select_from(users.outerjoin(memberships, memberships.c.user_id == users.c.id)))


def identity_of(rows: list[Any]) -> Identity:
    """The identity of the rows of one :func:`identity_query` (at least one row)."""
    first = rows[0]
    return Identity(user_id=int(first["id"]), name=first["name"], role=first["role"], disabled=bool(first["disabled"]),
                    memberships=tuple((int(r["ws_id"]), r["ws_role"]) for r in rows if r["ws_id"] is not None))


# Built once: every API request looks its token up, and building the statement (and its cache key)
# anew cost ~150 us of server CPU per request; a built statement's cache key is memoised.
_BY_TOKEN_HASH = (identity_query(api_tokens.c.role.label("token_role"), api_tokens.c.expires_at,
                                 api_tokens.c.revoked_at)
                  .join(api_tokens, api_tokens.c.user_id == users.c.id)
                  .where(api_tokens.c.token_hash == bindparam("token_hash")))


def by_token_hash(conn: Connection, token_hash: str) -> TokenGrant | None:
    rows = list(conn.execute(_BY_TOKEN_HASH, {"token_hash": token_hash}).mappings())
    if not rows:
        return None
    return TokenGrant(identity=identity_of(rows), role=rows[0]["token_role"], expires_at=rows[0]["expires_at"],
                      revoked_at=rows[0]["revoked_at"])


def credentials(conn: Connection, name: str) -> Credentials | None:
    """A user's identity and password hash by name; None when there is no such user."""
    rows = list(conn.execute(identity_query(users.c.password_hash).where(users.c.name == name)).mappings())
    return None if not rows else Credentials(identity=identity_of(rows), password_hash=rows[0]["password_hash"])


def insert_user(conn: Connection, name: str, role: str, password_hash: str | None, now: datetime) -> int:
    """Insert an enabled user; a taken name raises ``IntegrityError``."""
    user_id: int = conn.execute(users.insert().values(
        name=name, role=role, password_hash=password_hash, disabled=False, created_at=now,
    ).returning(users.c.id)).scalar_one()
    return user_id


def count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def password_hash(conn: Connection, user_id: int) -> str | None:
    value = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar()
    return None if value is None else str(value)


def set_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


def insert_token(conn: Connection, user_id: int, token_hash: str, prefix: str, role: str, name: str | None,
                 now: datetime, expires_at: datetime | None = None) -> None:
    conn.execute(api_tokens.insert().values(user_id=user_id, token_hash=token_hash, prefix=prefix, role=role,
                                            name=name, created_at=now, expires_at=expires_at))


def revoke_token_hash(conn: Connection, user_id: int, token_hash: str, now: datetime) -> str | None:
    """Revoke one live token of a user by its hash; its prefix, or None when no live token of that user
    has this hash."""
    prefix = conn.execute(update(api_tokens).where(
        api_tokens.c.user_id == user_id, api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None),
    ).values(revoked_at=now).returning(api_tokens.c.prefix)).scalar()
    return None if prefix is None else str(prefix)


def revoke_tokens_of(conn: Connection, user_id: int, now: datetime) -> int:
    """Revoke every live token of a user; how many were revoked."""
    res = conn.execute(update(api_tokens).where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
                       .values(revoked_at=now))
    return int(res.rowcount or 0)
