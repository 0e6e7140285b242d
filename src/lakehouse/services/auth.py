"""Users, API tokens and the principal a request acts as."""

from __future__ import annotations

import hashlib
import secrets
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
    # the role held in each workspace (the membership's role capped by ``role``); absent: ``role``
    workspace_roles: tuple[tuple[int, str], ...] = ()

    def can(self, action: Action) -> bool:
        return allowed(self.role, action)

    def require(self, action: Action) -> None:
        if not self.can(action):
            raise Forbidden(f"role {self.role} may not {action.value}", code="forbidden")

    def can_see(self, workspace_id: int) -> bool:
        return self.workspace_ids is None or workspace_id in self.workspace_ids

    def role_in(self, workspace_id: int) -> str:
        """The role this principal acts with in one workspace."""
        return dict(self.workspace_roles).get(workspace_id, self.role)

    def can_in(self, action: Action, workspace_id: int) -> bool:
        return self.can_see(workspace_id) and allowed(self.role_in(workspace_id), action)

    def require_in(self, action: Action, workspace_id: int) -> None:
        """Check ``action`` within one workspace: a workspace the principal is not a member of is
        ``NotFound`` (its existence is not disclosed), a role that may not act there is ``Forbidden``."""
        if not self.can_see(workspace_id):
            raise NotFound("workspace not found", code="workspace_not_found")
        role = self.role_in(workspace_id)
        if not allowed(role, action):
            raise Forbidden(f"role {role} may not {action.value} in this workspace", code="forbidden")


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
            if role != Role.EXECUTOR.value:  # an executor without memberships is the shared pool
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


def _members(rows: list[Any]) -> list[tuple[int, str | None]]:
    return [(int(r["ws_id"]), r["ws_role"]) for r in rows if r["ws_id"] is not None]


def principal_query(*columns: Any) -> Any:
    """users LEFT JOIN memberships: one row per membership (one with NULLs without any), so that a
    principal is built from the user's current state in one query on every call."""
    return (select(*columns, users.c.id, users.c.name, users.c.role, users.c.disabled,
                   memberships.c.workspace_id.label("ws_id"), memberships.c.role.label("ws_role"))
            .select_from(users.outerjoin(memberships, memberships.c.user_id == users.c.id)))


def principal_from_rows(rows: list[Any], token_role: str | None = None) -> Principal:
    first = rows[0]
    return _build(int(first["id"]), first["name"], first["role"], token_role or first["role"], _members(rows))


def authenticate_token(ctx: Context, token: str) -> Principal:
    """The principal of a bearer token, read on every call (no cache): a revoked token, a disabled
    user, a demotion or a removed membership take effect on the next request in every process."""
    if not token:
        raise Unauthorized("missing bearer token", code="missing_token")
    now = ctx.clock()
    stmt = principal_query(api_tokens.c.role.label("token_role"), api_tokens.c.expires_at,
                           api_tokens.c.revoked_at)
    stmt = stmt.join(api_tokens, api_tokens.c.user_id == users.c.id).where(
        api_tokens.c.token_hash == hash_token(token))
    with ctx.db.read() as conn:
        rows = list(conn.execute(stmt).mappings())
    if not rows or rows[0]["revoked_at"] is not None or rows[0]["disabled"] or (
        rows[0]["expires_at"] is not None and rows[0]["expires_at"] < now
    ):
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return principal_from_rows(rows, rows[0]["token_role"])


def _user_rows(conn: Any, name: str) -> list[Any]:
    return list(conn.execute(principal_query(users.c.password_hash).where(users.c.name == name)).mappings())


def authenticate_password(ctx: Context, name: str, password: str) -> Principal:
    with ctx.db.read() as conn:
        rows = _user_rows(conn, name)
    row = rows[0] if rows else None
    if row is None or row["disabled"] or not verify_password(row["password_hash"], password):
        raise Unauthorized("wrong user name or password", code="bad_credentials")
    if row["role"] == Role.EXECUTOR.value:
        raise Forbidden("executor accounts cannot log in", code="forbidden")
    return principal_from_rows(rows)


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


def principal_for_user(ctx: Context, name: str) -> Principal | None:
    """The principal a user acts as now (current role and memberships), e.g. the creator of a run whose
    ``query`` phase runs on its behalf; None when the user is unknown or disabled."""
    with ctx.db.read() as conn:
        rows = _user_rows(conn, name)
    if not rows or rows[0]["disabled"]:
        return None
    return principal_from_rows(rows)
