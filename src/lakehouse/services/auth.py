"""Users, API tokens and the principal a request acts as: hashing, role capping, and building a
``Principal`` (lakehouse.domain.principal) from the user's current row. The statements are in
store/auth.py."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.roles import Role
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from lakehouse.store import auth as store
from lakehouse.store import users as user_store
from lakehouse.store import workspaces as workspace_store
from lakehouse.store.auth import Identity
from lakehouse.store.types_public import IntegrityError

_hasher = PasswordHasher()
TOKEN_PREFIX = "lh_"


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
    try:
        with ctx.db.write() as conn:
            user_id = store.insert_user(conn, name, role, hash_password(password) if password else None, now)
            if role != Role.EXECUTOR.value:  # an executor without memberships is the shared pool
                ws_id = workspaces.default_id(conn, now)
                workspace_store.add_member(conn, ws_id, user_id, role)
            audit.record(conn, now, actor, "user.create", "user", name, None, {"role": role})
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists", code="user_exists") from None
    return {"id": user_id, "name": name, "role": role}


def create_token(ctx: Context, user_name: str, role: str | None = None, name: str | None = None,
                 actor: Principal = SYSTEM, expires_at: datetime | None = None) -> str:
    """Create an API token for a user and return it; only its hash is stored. Without ``expires_at`` it
    lives until revoked."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        user = user_store.by_name(conn, user_name)
        if user is None:
            raise NotFound(f"user {user_name!r} not found", code="user_not_found")
        token_role = role or user.role
        try:
            Role(token_role)
        except ValueError:
            raise InvalidInput(f"unknown role {token_role!r}", code="invalid_role") from None
        if token_role != Role.EXECUTOR.value and _rank(token_role) > _rank(user.role):
            raise Forbidden(f"a {user.role} cannot hold a {token_role} token", code="role_escalation")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        store.insert_token(conn, user.id, hash_token(token), token[:10], token_role, name, now, expires_at)
        audit.record(conn, now, actor, "token.create", "user", user_name, None, {"role": token_role})
    return token


_ORDER = [Role.VIEWER, Role.ANALYST, Role.ENGINEER, Role.ADMIN]


def _rank(role: str) -> int:
    r = Role(role)
    return _ORDER.index(r) if r in _ORDER else 0


def cap_role(role: str, ceiling: str) -> str:
    """``role`` (a token's) limited to what ``ceiling`` (its user's current role) may do. An executor
    token stays an executor whatever its user's role (it is still disabled and revoked with its user);
    any other token of an executor account keeps at most the executor's rights."""
    if role == ceiling or role == Role.EXECUTOR.value:
        return role
    if ceiling == Role.EXECUTOR.value:
        return Role.EXECUTOR.value if role == Role.ADMIN.value else Role.VIEWER.value
    return _ORDER[min(_rank(role), _rank(ceiling))].value


def _member_role(membership_role: str | None, role: str) -> str:
    """The role held in one workspace: the membership's role, never above the principal's role."""
    if membership_role is None:
        return role
    if membership_role not in {r.value for r in _ORDER}:
        return Role.VIEWER.value
    return _ORDER[min(_rank(membership_role), _rank(role))].value


def _build(user_id: int, name: str, user_role: str, token_role: str,
           members: list[tuple[int, str | None]]) -> Principal:
    """The principal of one user acting through a token of ``token_role`` (for sessions: the user's
    role), from the user's current role and memberships."""
    role = cap_role(token_role, user_role)
    ws_ids = frozenset(ws for ws, _ in members)
    if role == Role.ADMIN.value:
        return Principal(name=name, role=role, user_id=user_id)
    if role == Role.EXECUTOR.value:
        # an executor account bound to workspaces serves only those (a per-workspace pool); without any
        # membership it is the shared pool serving every workspace
        shared = user_role == Role.ADMIN.value or (user_role == Role.EXECUTOR.value and not ws_ids)
        return Principal(name=name, role=role, user_id=user_id, workspace_ids=None if shared else ws_ids)
    roles = tuple(sorted((ws, _member_role(m, role)) for ws, m in members))
    return Principal(name=name, role=role, user_id=user_id, workspace_ids=ws_ids, workspace_roles=roles)


def principal_of(identity: Identity, token_role: str | None = None) -> Principal:
    """The principal of a user acting through a token of ``token_role`` (default, as for password
    logins and sessions: the user's own role)."""
    return _build(identity.user_id, identity.name, identity.role, token_role or identity.role,
                  list(identity.memberships))


def authenticate_token(ctx: Context, token: str) -> Principal:
    """The principal of a bearer token, read on every call (no cache): a revoked token, a disabled
    user, a demotion or a removed membership take effect on the next request in every process."""
    if not token:
        raise Unauthorized("missing bearer token", code="missing_token")
    now = ctx.clock()
    with ctx.db.read() as conn:
        grant = store.by_token_hash(conn, hash_token(token))
    if grant is None or grant.revoked_at is not None or grant.identity.disabled or (
        grant.expires_at is not None and grant.expires_at < now
    ):
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return principal_of(grant.identity, grant.role)


def authenticate_password(ctx: Context, name: str, password: str) -> Principal:
    with ctx.db.read() as conn:
        found = store.credentials(conn, name)
    if found is None or found.identity.disabled or not verify_password(found.password_hash, password):
        raise Unauthorized("wrong user name or password", code="bad_credentials")
    if found.identity.role == Role.EXECUTOR.value:
        raise Forbidden("executor accounts cannot log in", code="forbidden")
    return principal_of(found.identity)


def revoke_tokens(ctx: Context, user_name: str, now: datetime | None = None) -> int:
    with ctx.db.write() as conn:
        user = user_store.by_name(conn, user_name)
        if user is None:
            raise NotFound(f"user {user_name!r} not found", code="user_not_found")
        return store.revoke_tokens_of(conn, user.id, now or ctx.clock())


def user_count(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return store.count_users(conn)


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


def principal_for_user(ctx: Context, name: str) -> Principal | None:
    """The principal a user acts as now (current role and memberships), e.g. the creator of a run whose
    ``query`` phase runs on its behalf; None when the user is unknown or disabled."""
    with ctx.db.read() as conn:
        found = store.credentials(conn, name)
    if found is None or found.identity.disabled:
        return None
    return principal_of(found.identity)
