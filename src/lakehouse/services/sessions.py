"""Browser sessions of the Control Room: login with throttling, logout, password change, admin unlock.

The cookie holds a random value; only its sha256 is stored. Each session carries its own CSRF token.
Every login (and every failed one) is written to the audit log with the caller's address.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action, Role
from lakehouse.services import audit
from lakehouse.services.auth import authenticate_password, hash_password, principal_of, verify_password
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from lakehouse.store import auth as auth_store
from lakehouse.store import sessions as store
from lakehouse.store import users as user_store
from lakehouse.store.sessions import Throttle
from lakehouse.store.types_public import Connection

SESSION_TTL = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=5)
FREE_FAILURES = 5  # failed logins per (account, address) before the first delay
FIRST_DELAY = timedelta(minutes=1)  # then the delay doubles with every further failure ...
MAX_DELAY = timedelta(hours=1)  # ... up to this
FORGET_AFTER = timedelta(hours=24)  # a pair's failures are forgotten this long after the last one
MAX_ADDRESS_FAILURES = 20  # failures from one address within ADDRESS_WINDOW, any account
ADDRESS_WINDOW = timedelta(minutes=15)
ANY_ACCOUNT = ""  # the user_name of an address's own throttle row (no account has an empty name)
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


Network = IPv4Network | IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Parse the ``trusted_proxies`` setting (addresses or CIDR networks); a wrong entry is an error."""
    try:
        return tuple(ip_network(e.strip(), strict=False) for e in entries if e.strip())
    except ValueError as exc:
        raise InvalidInput(f"trusted_proxies: {exc}", code="invalid_setting") from None


def _ip(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ip_address(value)
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: list[str], trusted: list[str]) -> str | None:
    """The address a request comes from. ``X-Forwarded-For`` is believed only when the socket peer is a
    trusted proxy; it is then read from the right, skipping the trusted proxies that appended to it:
    the first address not trusted is the client (what the nearest trusted proxy saw)."""
    nets = trusted_networks(tuple(trusted))
    peer_ip = _ip(peer) if peer else None
    if not nets or peer_ip is None or not any(peer_ip in n for n in nets):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    client = str(peer_ip)
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:  # garbage: stop at the last address a trusted proxy vouched for
            break
        client = str(ip)
        if not any(ip in n for n in nets):
            break
    return client


def delay_after(failures: int) -> timedelta | None:
    """How long a (account, address) pair waits after its ``failures``-th consecutive failure."""
    if failures < FREE_FAILURES:
        return None
    return min(FIRST_DELAY * (1 << min(failures - FREE_FAILURES, 20)), MAX_DELAY)


def _minutes(delta: timedelta) -> int:
    return max(1, -(-int(delta.total_seconds()) // 60))


def _reserve(conn: Connection, name: str, address: str, now: datetime) -> int:
    """Decide and count one attempt in one transaction, before its password is checked.

    The address row is locked first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
    serialises every writer), so concurrent attempts from one address are decided one after the other:
    each is counted as a failure up front, and at most ``FREE_FAILURES`` reach the password check.
    Returns the id of the attempt's ``login_attempts`` row."""
    rows = store.lock_throttles(conn, address, [ANY_ACCOUNT, name])
    pair, whole = rows[name], rows[ANY_ACCOUNT]
    if pair.locked_until is not None and pair.locked_until > now:
        wait = _minutes(pair.locked_until - now)
        raise RateLimited(f"too many failed logins for {name!r} from this address; it is locked for {wait} min",
                          code="locked_out", details={"retry_after_s": wait * 60})
    fresh = whole.first_failure_at is None or now - whole.first_failure_at > ADDRESS_WINDOW
    if whole.first_failure_at is not None and not fresh and whole.failures >= MAX_ADDRESS_FAILURES:
        wait = _minutes(whole.first_failure_at + ADDRESS_WINDOW - now)
        raise RateLimited("too many failed logins from this address; try again later", code="rate_limited",
                          details={"retry_after_s": wait * 60})
    forgotten = pair.last_failure_at is None or now - pair.last_failure_at > FORGET_AFTER
    failures = 1 if forgotten else pair.failures + 1
    delay = delay_after(failures)
    store.set_throttle(conn, name, address, Throttle(
        failures=failures, last_failure_at=now, first_failure_at=now if forgotten else pair.first_failure_at,
        locked_until=now + delay if delay else None))
    store.set_throttle(conn, ANY_ACCOUNT, address, Throttle(
        failures=1 if fresh else whole.failures + 1, last_failure_at=now,
        first_failure_at=now if fresh else whole.first_failure_at, locked_until=whole.locked_until))
    return store.insert_attempt(conn, name, address, now)


def _release(conn: Connection, name: str, address: str, attempt: int) -> None:
    """A successful login: the pair's failures are cleared and the address's count gives the attempt back."""
    store.set_throttle(conn, name, address, Throttle(failures=0, first_failure_at=None, last_failure_at=None,
                                                     locked_until=None))
    store.give_back_failure(conn, ANY_ACCOUNT, address)
    store.mark_attempt_ok(conn, attempt)


def check_password(ctx: Context, name: str, password: str, address: str | None) -> Principal:
    """Count the attempt against the limits, check the password and the role (a failure is audited as
    ``login.failed``); on success the pair's failures are cleared. Shared by the login page and the
    CLI's ``lakehouse login`` (services/cli_tokens.py): one throttle for both."""
    name = name.strip()[:100]
    if not name:
        raise Unauthorized("wrong user name or password", code="bad_credentials")
    where = (address or "unknown")[:64]
    now = ctx.clock()
    with ctx.db.write() as conn:
        attempt = _reserve(conn, name, where, now)
    try:
        principal = authenticate_password(ctx, name, password)
    except (Unauthorized, Forbidden) as exc:
        with ctx.db.write() as conn:
            audit.record(conn, now, name, "login.failed", "user", name, None, {"reason": exc.code}, address)
        raise
    with ctx.db.write() as conn:
        _release(conn, name, where, attempt)
    return principal


def login(ctx: Context, name: str, password: str, address: str | None) -> tuple[str, Session]:
    """Count the attempt against the limits, check the password and the role; return (cookie value,
    session). ``address`` is the client address (see ``web.session.client_address``)."""
    principal = check_password(ctx, name, password, address)
    now = ctx.clock()
    value = secrets.token_urlsafe(32)
    session = Session(principal=principal, csrf_token=new_csrf_token(), id_hash=_hash(value),
                      expires_at=now + SESSION_TTL)
    with ctx.db.write() as conn:
        store.insert_session(conn, id_hash=session.id_hash, user_id=principal.user_id,
                             csrf_token=session.csrf_token, now=now, expires_at=session.expires_at, address=address)
        audit.record(conn, now, principal, "login", "user", principal.name, None, {}, address)
    return value, session


def unlock(ctx: Context, actor: Principal, name: str, address: str | None = None) -> int:
    """Clear the login throttling of an account from every address (admins only); returns how many
    (account, address) pairs were cleared."""
    actor.require(Action.USER_ADMIN)
    now = ctx.clock()
    with ctx.db.write() as conn:
        if user_store.by_name(conn, name) is None:
            raise NotFound(f"user {name!r} not found", code="user_not_found")
        cleared = store.clear_throttles(conn, name)
        audit.record(conn, now, actor, "user.unlock", "user", name, None, {"cleared": cleared}, address)
    return cleared


def lookup(ctx: Context, value: str) -> Session | None:
    """The live session for a cookie value, or None (expired, logged out, user disabled)."""
    if not value or len(value) > 200:
        return None
    now = ctx.clock()
    id_hash = _hash(value)
    with ctx.db.read() as conn:
        row = store.session_by_hash(conn, id_hash)
    if row is None or row.identity.disabled or row.expires_at <= now or row.identity.role == Role.EXECUTOR.value:
        return None
    principal = principal_of(row.identity)
    if now - row.last_seen_at > TOUCH_EVERY:
        with ctx.db.write() as conn:
            store.touch(conn, id_hash, now)
    return Session(principal=principal, csrf_token=row.csrf_token, id_hash=id_hash, expires_at=row.expires_at)


def logout(ctx: Context, session: Session, address: str | None) -> None:
    now = ctx.clock()
    with ctx.db.write() as conn:
        store.delete_session(conn, session.id_hash)
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
        stored = auth_store.password_hash(conn, user_id)
    if not verify_password(stored, current):
        raise InvalidInput("the current password is wrong", code="bad_credentials")
    with ctx.db.write() as conn:
        auth_store.set_password_hash(conn, user_id, hash_password(new))
        store.end_user_sessions(conn, user_id, keep=session.id_hash)
        audit.record(conn, now, session.principal, "user.password_change", "user", session.principal.name, None,
                     {}, address)


def end_user_sessions(conn: Connection, user_id: int) -> None:
    """Used by user administration (in its transaction) when a user is disabled or their role changes."""
    store.end_user_sessions(conn, user_id)
