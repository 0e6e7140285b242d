"""The OAuth2 client-credentials exchange of the Iceberg REST catalog (``POST /iceberg/v1/oauth/tokens``).

Clients (pyiceberg ``credential=<user>:<api token>``, DuckDB ``CLIENT_ID``/``CLIENT_SECRET``, Spark,
Trino) send an API token as the client secret and the token's user as the client id; the answer is an
access token valid for :data:`TTL_S` seconds. The access token is the API token encrypted with the
control plane's key (Fernet, time-stamped): only the control plane can read it, and every call made
with it is checked against the API token as it is *now* — a revoked token, a disabled user, a demotion
or a removed membership take effect on the next call, not when the access token expires.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken

from lakehouse.services import auth
from lakehouse.services.connections import cipher
from lakehouse.services.context import Context
from lakehouse.services.errors import ServiceError, Unauthorized

ACCESS_PREFIX = "lhit_"
TTL_S = 3600


class OAuthError(ServiceError):
    """An OAuth2 error (RFC 6749 §5.2): ``code`` is the OAuth error code."""

    status = 400
    code = "invalid_request"


def issue(ctx: Context, form: dict[str, str]) -> dict[str, Any]:
    grant = form.get("grant_type")
    if grant != "client_credentials":
        raise OAuthError(f"grant_type {grant!r} is not supported; use client_credentials",
                         code="unsupported_grant_type")
    secret = form.get("client_secret") or ""
    if not secret:
        raise OAuthError("client_secret (an API token) is required", code="invalid_request")
    try:
        principal = auth.authenticate_token(ctx, secret)
    except Unauthorized:
        err = OAuthError("unknown, revoked or expired client secret", code="invalid_client")
        err.status = 401
        raise err from None
    client_id = form.get("client_id")
    if client_id and client_id != principal.name:
        err = OAuthError("client_id is not the user of this client secret", code="invalid_client")
        err.status = 401
        raise err
    now = int(ctx.clock().timestamp())
    token = cipher(ctx.settings.secret_key).encrypt_at_time(secret.encode(), now).decode()
    return {"access_token": ACCESS_PREFIX + token, "token_type": "bearer", "expires_in": TTL_S,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}


def api_token_of(ctx: Context, access_token: str) -> str:
    """The API token inside an access token; 401 when it is not ours or has expired."""
    now = int(ctx.clock().timestamp())
    try:
        return cipher(ctx.settings.secret_key).decrypt_at_time(
            access_token[len(ACCESS_PREFIX):].encode(), TTL_S, now).decode()
    except (InvalidToken, ValueError):
        raise Unauthorized("invalid or expired access token", code="NotAuthorizedException") from None
