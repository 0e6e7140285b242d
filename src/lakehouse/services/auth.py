"""Users, API tokens and the principal a request acts as."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from lakehouse.domain.roles import Action, Role, allowed
from lakehouse.services import audit
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from lakehouse.store.tables import api_tokens, memberships, users

_hasher = PasswordHasher()
TOKEN_PREFIX = "lh_"


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user through a token, a session, or the local CLI (``system``)."""

    name: str
    role: str
    user_id: int | None = None
    workspace_ids: frozenset[int] | None = None  # None: every workspace (admins, system)

    def can(self, action: Action) -> bool:
        return allowed(self.role, action)

    def require(self, action: Action) -> None:
        if not self.can(action):
            raise Forbidden(f"role {self.role} may not {action.value}", code="forbidden")

    def can_see(self, workspace_id: int) -> bool:
        return self.workspace_ids is None or workspace_id in self.workspace_ids


SYSTEM = Principal(name="system", role=Role.ADMIN.value)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


def create_user(ctx: Context, name: str, role: str, password: str | None, actor: Principal = SYSTEM
                ) -> dict[str, Any]:
    try:
        role = Role(role).value
    except ValueError:
        raise InvalidInput(f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}",
                           code="invalid_role") from None
    if not name or len(name) > 100 or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidInput("user names use letters, digits, _ - . (1-100 chars)", code="invalid_name")
    if password is not None and len(password) < 8:
        raise InvalidInput("passwords need at least 8 characters", code="weak_password")
    now = ctx.clock()
    from lakehouse.services import workspaces

    try:
        with ctx.db.write() as conn:
            user_id: int = conn.execute(users.insert().values(
                name=name, role=role, password_hash=hash_password(password) if password else None,
                disabled=False, created_at=now,
            ).returning(users.c.id)).scalar_one()
            ws_id = workspaces.default_id(conn, now)
            conn.execute(memberships.insert().values(workspace_id=ws_id, user_id=user_id, role=role))
            audit.record(conn, now, actor, "user.create", "user", name, None, {"role": role})
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists", code="user_exists") from None
    return {"id": user_id, "name": name, "role": role}


def create_token(ctx: Context, user_name: str, role: str | None = None, name: str | None = None,
                 actor: Principal = SYSTEM) -> str:
    """Create an API token for a user and return it; only its hash is stored."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        user = conn.execute(select(users).where(users.c.name == user_name)).mappings().first()
        if user is None:
            raise NotFound(f"user {user_name!r} not found", code="user_not_found")
        token_role = role or user["role"]
        try:
            Role(token_role)
        except ValueError:
            raise InvalidInput(f"unknown role {token_role!r}", code="invalid_role") from None
        if token_role != Role.EXECUTOR.value and _rank(token_role) > _rank(user["role"]):
            raise Forbidden(f"a {user['role']} cannot hold a {token_role} token", code="role_escalation")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        conn.execute(api_tokens.insert().values(
            user_id=user["id"], token_hash=hash_token(token), prefix=token[:10], role=token_role,
            name=name, created_at=now,
        ))
        audit.record(conn, now, actor, "token.create", "user", user_name, None, {"role": token_role})
    return token


_ORDER = [Role.VIEWER, Role.ANALYST, Role.ENGINEER, Role.ADMIN]


def _rank(role: str) -> int:
    r = Role(role)
    return _ORDER.index(r) if r in _ORDER else 0


class TokenCache:
    """Short-lived cache of token lookups so that hot executor calls skip one query."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._items: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Principal | None:
        with self._lock:
            hit = self._items.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        return None

    def put(self, key: str, principal: Principal) -> None:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl_s, principal)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def authenticate_token(ctx: Context, token: str, cache: TokenCache | None = None) -> Principal:
    if not token:
        raise Unauthorized("missing bearer token", code="missing_token")
    key = hash_token(token)
    if cache and (p := cache.get(key)):
        return p
    now = ctx.clock()
    with ctx.db.read() as conn:
        row = conn.execute(
            select(api_tokens.c.role, api_tokens.c.expires_at, api_tokens.c.revoked_at, users.c.id,
                   users.c.name, users.c.disabled, users.c.role.label("user_role"))
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.token_hash == key)
        ).mappings().first()
        if row is None or row["revoked_at"] is not None or row["disabled"] or (
            row["expires_at"] is not None and row["expires_at"] < now
        ):
            raise Unauthorized("invalid or expired token", code="invalid_token")
        principal = _principal(conn, row["id"], row["name"], row["role"])
    if cache:
        cache.put(key, principal)
    return principal


def _principal(conn: Any, user_id: int, name: str, role: str) -> Principal:
    if role == Role.ADMIN.value or role == Role.EXECUTOR.value:
        ws: frozenset[int] | None = None  # executors serve every workspace, like a shared cluster
    else:
        ws = frozenset(conn.execute(select(memberships.c.workspace_id).where(memberships.c.user_id == user_id))
                       .scalars())
    return Principal(name=name, role=role, user_id=user_id, workspace_ids=ws)


def authenticate_password(ctx: Context, name: str, password: str) -> Principal:
    with ctx.db.read() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
        if row is None or row["disabled"] or not verify_password(row["password_hash"], password):
            raise Unauthorized("wrong user name or password", code="bad_credentials")
        if row["role"] == Role.EXECUTOR.value:
            raise Forbidden("executor accounts cannot log in", code="forbidden")
        return _principal(conn, row["id"], row["name"], row["role"])


def revoke_tokens(ctx: Context, user_name: str, now: datetime | None = None) -> int:
    with ctx.db.write() as conn:
        uid = conn.execute(select(users.c.id).where(users.c.name == user_name)).scalar()
        if uid is None:
            raise NotFound(f"user {user_name!r} not found", code="user_not_found")
        res = conn.execute(update(api_tokens).where(api_tokens.c.user_id == uid, api_tokens.c.revoked_at.is_(None))
                           .values(revoked_at=now or ctx.clock()))
        return int(res.rowcount or 0)


def user_count(ctx: Context) -> int:
    from sqlalchemy import func

    with ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def bootstrap_admin(ctx: Context) -> tuple[str, str] | None:
    """On an empty database, create ``admin`` with a random password; return (name, password)."""
    if user_count(ctx) > 0:
        return None
    password = secrets.token_urlsafe(12)
    try:
        create_user(ctx, "admin", Role.ADMIN.value, password)
    except Conflict:
        return None
    return "admin", password
