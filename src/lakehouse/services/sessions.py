"""Browser sessions of the Control Room: login with rate limiting and lockout, logout, password change.

The cookie holds a random value; only its sha256 is stored. Each session carries its own CSRF token.
Every login (and every failed one) is written to the audit log with the caller's address.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from lakehouse.domain.roles import Role
from lakehouse.services import audit
from lakehouse.services.auth import Principal, _principal, authenticate_password, hash_password, verify_password
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, InvalidInput, RateLimited, Unauthorized
from lakehouse.store.tables import login_attempts, users, web_sessions

SESSION_TTL = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=5)
LOCKOUT_WINDOW = timedelta(minutes=15)
MAX_USER_FAILURES = 5  # then the account is locked for LOCKOUT_WINDOW after the last failure
MAX_ADDRESS_FAILURES = 20  # failures from one address within LOCKOUT_WINDOW, any user name
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    id_hash: str
    expires_at: datetime


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _check_limits(ctx: Context, name: str, address: str | None, now: datetime) -> None:
    since = now - LOCKOUT_WINDOW
    with ctx.db.read() as conn:
        last_ok = conn.execute(select(func.max(login_attempts.c.ts)).where(
            login_attempts.c.user_name == name, login_attempts.c.ok.is_(True))).scalar()
        user_since = max(since, last_ok) if last_ok else since
        fails = conn.execute(select(func.count(), func.max(login_attempts.c.ts)).where(
            login_attempts.c.user_name == name, login_attempts.c.ok.is_(False),
            login_attempts.c.ts > user_since)).one()
        if fails[0] >= MAX_USER_FAILURES:
            wait = int((fails[1] + LOCKOUT_WINDOW - now).total_seconds() // 60) + 1
            raise RateLimited(f"too many failed logins for {name!r}; the account is locked for {wait} min",
                              code="locked_out", details={"retry_after_s": wait * 60})
        if address:
            by_address = conn.execute(select(func.count()).where(
                login_attempts.c.address == address, login_attempts.c.ok.is_(False),
                login_attempts.c.ts > since)).scalar_one()
            if by_address >= MAX_ADDRESS_FAILURES:
                raise RateLimited("too many failed logins from this address; try again later",
                                  code="rate_limited", details={"retry_after_s": int(LOCKOUT_WINDOW.total_seconds())})


def login(ctx: Context, name: str, password: str, address: str | None) -> tuple[str, Session]:
    """Check the limits, the password and the role; return (cookie value, session)."""
    name = name.strip()[:100]
    now = ctx.clock()
    _check_limits(ctx, name, address, now)
    try:
        principal = authenticate_password(ctx, name, password)
    except (Unauthorized, Forbidden) as exc:
        with ctx.db.write() as conn:
            conn.execute(login_attempts.insert().values(user_name=name, address=address, ts=now, ok=False))
            audit.record(conn, now, name or "anonymous", "login.failed", "user", name, None,
                         {"reason": exc.code}, address)
        raise
    value = secrets.token_urlsafe(32)
    session = Session(principal=principal, csrf_token=new_csrf_token(), id_hash=_hash(value),
                      expires_at=now + SESSION_TTL)
    with ctx.db.write() as conn:
        conn.execute(login_attempts.insert().values(user_name=name, address=address, ts=now, ok=True))
        conn.execute(web_sessions.insert().values(
            id_hash=session.id_hash, user_id=principal.user_id, csrf_token=session.csrf_token, created_at=now,
            last_seen_at=now, expires_at=session.expires_at, address=address))
        audit.record(conn, now, principal, "login", "user", principal.name, None, {}, address)
    return value, session


def lookup(ctx: Context, value: str) -> Session | None:
    """The live session for a cookie value, or None (expired, logged out, user disabled)."""
    if not value or len(value) > 200:
        return None
    now = ctx.clock()
    id_hash = _hash(value)
    with ctx.db.read() as conn:
        row = conn.execute(
            select(web_sessions.c.csrf_token, web_sessions.c.expires_at, web_sessions.c.last_seen_at,
                   users.c.id, users.c.name, users.c.role, users.c.disabled)
            .join(users, users.c.id == web_sessions.c.user_id)
            .where(web_sessions.c.id_hash == id_hash)).mappings().first()
        if row is None or row["disabled"] or row["expires_at"] <= now or row["role"] == Role.EXECUTOR.value:
            return None
        principal = _principal(conn, row["id"], row["name"], row["role"])
    if now - row["last_seen_at"] > TOUCH_EVERY:
        with ctx.db.write() as conn:
            conn.execute(update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(last_seen_at=now))
    return Session(principal=principal, csrf_token=row["csrf_token"], id_hash=id_hash, expires_at=row["expires_at"])


def logout(ctx: Context, session: Session, address: str | None) -> None:
    now = ctx.clock()
    with ctx.db.write() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == session.id_hash))
        audit.record(conn, now, session.principal, "logout", "user", session.principal.name, None, {}, address)


def change_password(ctx: Context, session: Session, current: str, new: str, address: str | None) -> None:
    """Change one's own password; every other session of the user ends."""
    if len(new) < MIN_PASSWORD:
        raise InvalidInput(f"the new password needs at least {MIN_PASSWORD} characters", code="weak_password")
    if new == current:
        raise InvalidInput("the new password must differ from the current one", code="same_password")
    user_id = session.principal.user_id
    if user_id is None:
        raise Forbidden("this principal has no password", code="forbidden")
    now = ctx.clock()
    with ctx.db.read() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar()
    if not verify_password(stored, current):
        raise InvalidInput("the current password is wrong", code="bad_credentials")
    with ctx.db.write() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=hash_password(new)))
        conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id,
                                                web_sessions.c.id_hash != session.id_hash))
        audit.record(conn, now, session.principal, "user.password_change", "user", session.principal.name, None,
                     {}, address)


def end_user_sessions(conn: object, user_id: int) -> None:
    """Used by user administration when a user is disabled or their role changes."""
    from sqlalchemy import Connection

    assert isinstance(conn, Connection)
    conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))
