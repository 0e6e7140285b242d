"""Statements of the Control Room's browser sessions (``web_sessions``) and of login throttling
(``login_throttles``, ``login_attempts``). services/sessions.py keeps the rules: how many failures
before a delay, how long a session lives, who may unlock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select, update

from lakehouse.store import dialect
from lakehouse.store.auth import Identity, identity_of, identity_query
from lakehouse.store.tables import login_attempts, login_throttles, users, web_sessions


@dataclass(frozen=True)
class Throttle:
    """The failures counted against one (account, address) pair, or against an address (any account)."""

    failures: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    locked_until: datetime | None


@dataclass(frozen=True)
class SessionRow:
    identity: Identity
    csrf_token: str
    expires_at: datetime
    last_seen_at: datetime


# --- throttling ---------------------------------------------------------------------------------------

def lock_throttles(conn: Connection, address: str, names: list[str]) -> dict[str, Throttle]:
    """The throttle rows of ``address`` for each of ``names`` (created when missing), locked for the
    transaction (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises every
    writer), in name order so that concurrent callers lock them in the same order."""
    dialect.insert_ignore(conn, login_throttles, [{"user_name": n, "address": address, "failures": 0} for n in names],
                          "user_name", "address")
    rows = conn.execute(dialect.for_update(conn, select(login_throttles).where(
        login_throttles.c.address == address, login_throttles.c.user_name.in_(names))
        .order_by(login_throttles.c.user_name))).mappings()
    return {r["user_name"]: Throttle(failures=int(r["failures"]), first_failure_at=r["first_failure_at"],
                                     last_failure_at=r["last_failure_at"], locked_until=r["locked_until"])
            for r in rows}


def set_throttle(conn: Connection, name: str, address: str, throttle: Throttle) -> None:
    conn.execute(update(login_throttles).where(login_throttles.c.user_name == name,
                                               login_throttles.c.address == address).values(
        failures=throttle.failures, first_failure_at=throttle.first_failure_at,
        last_failure_at=throttle.last_failure_at, locked_until=throttle.locked_until))


def give_back_failure(conn: Connection, name: str, address: str) -> None:
    """One failure fewer on a throttle row (never below zero)."""
    conn.execute(update(login_throttles).where(login_throttles.c.user_name == name,
                                               login_throttles.c.address == address,
                                               login_throttles.c.failures > 0).values(
        failures=login_throttles.c.failures - 1))


def clear_throttles(conn: Connection, name: str) -> int:
    """Delete the throttle rows of an account, from every address; how many there were."""
    return int(conn.execute(delete(login_throttles).where(login_throttles.c.user_name == name)).rowcount or 0)


def insert_attempt(conn: Connection, name: str, address: str, now: datetime) -> int:
    """Record a login attempt (as failed until :func:`mark_attempt_ok`); its id."""
    attempt: int = conn.execute(login_attempts.insert().values(user_name=name, address=address, ts=now, ok=False)
                                .returning(login_attempts.c.id)).scalar_one()
    return attempt


def mark_attempt_ok(conn: Connection, attempt: int) -> None:
    conn.execute(update(login_attempts).where(login_attempts.c.id == attempt).values(ok=True))


# --- sessions -----------------------------------------------------------------------------------------

def insert_session(conn: Connection, *, id_hash: str, user_id: int | None, csrf_token: str, now: datetime,
                   expires_at: datetime, address: str | None) -> None:
    conn.execute(web_sessions.insert().values(
        id_hash=id_hash, user_id=user_id, csrf_token=csrf_token, created_at=now, last_seen_at=now,
        expires_at=expires_at, address=address))


_BY_HASH = (identity_query(web_sessions.c.csrf_token, web_sessions.c.expires_at, web_sessions.c.last_seen_at)
            .join(web_sessions, web_sessions.c.user_id == users.c.id)
            .where(web_sessions.c.id_hash == bindparam("id_hash")))  # built once: read on every page


def session_by_hash(conn: Connection, id_hash: str) -> SessionRow | None:
    """A session with its user's current identity; None when there is no such session."""
    rows = list(conn.execute(_BY_HASH, {"id_hash": id_hash}).mappings())
    if not rows:
        return None
    return SessionRow(identity=identity_of(rows), csrf_token=rows[0]["csrf_token"],
                      expires_at=rows[0]["expires_at"], last_seen_at=rows[0]["last_seen_at"])


def touch(conn: Connection, id_hash: str, now: datetime) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.id_hash == id_hash).values(last_seen_at=now))


def delete_session(conn: Connection, id_hash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == id_hash))


def end_user_sessions(conn: Connection, user_id: int, keep: str | None = None) -> None:
    """End every session of a user (but the one whose hash is ``keep``)."""
    stmt = delete(web_sessions).where(web_sessions.c.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(web_sessions.c.id_hash != keep)
    conn.execute(stmt)
