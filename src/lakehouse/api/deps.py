"""Request dependencies: the service context, the client's address and the authenticated principal."""

from __future__ import annotations

from fastapi import Depends, Request

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services.auth import authenticate_token
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, Unauthorized
from lakehouse.services.sessions import client_address


def context(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def address(request: Request) -> str | None:
    """The client's address: the socket peer, or what a trusted proxy (setting ``trusted_proxies``)
    says in ``X-Forwarded-For``."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"),
                          request.app.state.ctx.settings.trusted_proxies)


def principal(request: Request) -> Principal:
    """The caller, looked up on every request (token or session): no cache, so a revoked token, a
    disabled user, a demotion or a removed membership count from the next call on, in every process."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        session = getattr(request.state, "session_principal", None)
        if session is not None:
            return session  # type: ignore[no-any-return]
        raise Unauthorized("missing Authorization: Bearer <token>", code="missing_token")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", code="invalid_token")
    return authenticate_token(request.app.state.ctx, token.strip())


def require(action: Action):  # type: ignore[no-untyped-def]
    def dep(p: Principal = Depends(principal)) -> Principal:
        if not p.can(action):
            raise Forbidden(f"role {p.role} may not {action.value}", code="forbidden")
        return p

    return dep
