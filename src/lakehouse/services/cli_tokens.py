"""The CLI's stored login (`lakehouse login`, as `gh auth login` and `databricks auth login` do): a user
trades their password for an API token of their own, which the CLI keeps in a file only they can read.

The token is as narrow as the CLI needs and short-lived: role :data:`CLI_ROLE` (reads and SQL; capped by
the user's own role, so a viewer gets a viewer token), expiring after :data:`CLI_TOKEN_TTL`. It is named
``lakehouse login · <client>`` so that it can be told apart where tokens are listed and revoked (the
account page lists a user's own tokens, the Users page everyone's). The password check shares the login
page's throttling (services/sessions.py). A token can revoke itself (`lakehouse logout`); a user revokes
any token of their own from the account page.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Role
from lakehouse.services import audit, auth, sessions
from lakehouse.services.context import Context
from lakehouse.services.errors import NotFound
from lakehouse.store import auth as store
from lakehouse.store import users as user_store

CLI_ROLE = Role.ANALYST  # the narrowest role that may run SQL (Action.QUERY) and read
CLI_TOKEN_TTL = timedelta(days=30)
NAME_PREFIX = "lakehouse login"
_UNSAFE = re.compile(r"[^A-Za-z0-9 ._@:/()-]+")


def token_name(client: str | None) -> str:
    """``lakehouse login · <client>`` with the client label reduced to printable, harmless characters."""
    label = _UNSAFE.sub("", (client or "").strip())[:60].strip()
    return f"{NAME_PREFIX} · {label}" if label else NAME_PREFIX


def issue(ctx: Context, name: str, password: str, address: str | None, client: str | None = None
          ) -> dict[str, Any]:
    """Check ``name``/``password`` (throttled, audited like the login page) and return a new token of
    that user: ``{token, user, role, name, expires_at}``. The token is shown here only; its hash is
    stored."""
    principal = sessions.check_password(ctx, name, password, address)
    role = auth.cap_role(CLI_ROLE.value, principal.role)
    expires_at = ctx.clock() + CLI_TOKEN_TTL
    label = token_name(client)
    token = auth.create_token(ctx, principal.name, role, label, actor=principal, expires_at=expires_at)
    return {"token": token, "user": principal.name, "role": role, "name": label, "expires_at": expires_at}


def describe(ctx: Context, p: Principal, token: str) -> dict[str, Any]:
    """Who a token acts as now: ``{user, role, expires_at}`` (``p`` is the principal of ``token``)."""
    with ctx.db.read() as conn:
        grant = store.by_token_hash(conn, auth.hash_token(token))
    if grant is None or grant.identity.user_id != p.user_id:
        raise NotFound("this token is not a token of the caller", code="token_not_found")
    expires: datetime | None = grant.expires_at
    return {"user": p.name, "role": p.role, "expires_at": expires}


def revoke_own(ctx: Context, p: Principal, token: str, address: str | None = None) -> None:
    """Revoke ``token``, a live token of the caller ``p`` (audited as ``token.revoke``)."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        prefix = store.revoke_token_hash(conn, p.user_id or 0, auth.hash_token(token), now)
        if prefix is None:
            raise NotFound("this token is not a live token of the caller", code="token_not_found")
        audit.record(conn, now, p, "token.revoke", "token", prefix, None, {"user": p.name, "by": "self"}, address)


def own_tokens(ctx: Context, p: Principal) -> list[dict[str, Any]]:
    """The caller's own API tokens (never their hash), newest first: what the account page lists."""
    if p.user_id is None:
        return []
    with ctx.db.read() as conn:
        return [asdict(t) for t in user_store.tokens(conn, p.user_id)]


def revoke_own_token(ctx: Context, p: Principal, token_id: int, address: str | None = None) -> None:
    """Revoke one of the caller's own tokens by id (the account page); another user's is ``NotFound``."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        owner = user_store.token_owner(conn, token_id)
        if owner is None or owner[1] != p.name or p.user_id is None:
            raise NotFound(f"token {token_id} not found", code="token_not_found")
        user_store.revoke_token(conn, token_id, now)
        audit.record(conn, now, p, "token.revoke", "token", owner[0], None, {"user": p.name, "by": "self"}, address)
