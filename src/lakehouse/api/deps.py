"""Request dependencies: the service context and the authenticated principal."""

from __future__ import annotations

from fastapi import Depends, Request

from lakehouse.domain.roles import Action
from lakehouse.services.auth import Principal, authenticate_token
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, Unauthorized


def context(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        session = getattr(request.state, "session_principal", None)
        if session is not None:
            return session  # type: ignore[no-any-return]
        raise Unauthorized("missing Authorization: Bearer <token>", code="missing_token")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'", code="invalid_token")
    return authenticate_token(request.app.state.ctx, token.strip(), request.app.state.token_cache)


def require(action: Action):  # type: ignore[no-untyped-def]
    def dep(p: Principal = Depends(principal)) -> Principal:
        if not p.can(action):
            raise Forbidden(f"role {p.role} may not {action.value}", code="forbidden")
        return p

    return dep
