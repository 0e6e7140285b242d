"""The CLI's own tokens over HTTP (/api/tokens…): `lakehouse login` trades a password for a short-lived,
narrow token of the user (services/cli_tokens.py); the token tells who it is and revokes itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api.deps import address, context
from lakehouse.api.schemas import ErrorResponse
from lakehouse.services import cli_tokens
from lakehouse.services.auth import authenticate_token
from lakehouse.services.context import Context
from lakehouse.services.errors import Unauthorized

router = APIRouter(prefix="/api/tokens", tags=["tokens"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 422, 429)}


class TokenLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)
    client: str | None = Field(default=None, max_length=200,
                               description="where the token will live (the CLI sends its host name); part of the "
                                           "token's name")


class TokenOut(BaseModel):
    token: str = Field(description="the API token; shown once, only its hash is stored")
    user: str
    role: str = Field(description="the token's role: analyst (reads and SQL), or the user's role when lower")
    name: str = Field(description="the token's name, as the Users page lists it")
    expires_at: datetime


class TokenSelf(BaseModel):
    user: str
    role: str = Field(description="the role the token acts with now (capped by the user's current role)")
    expires_at: datetime | None


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <the token itself>", code="missing_token")
    return token.strip()


@router.post("", response_model=TokenOut, status_code=201, responses=ERRORS)
def create_own_token(body: TokenLogin, request: Request, ctx: Context = Depends(context)) -> dict[str, Any]:
    """Log in with a password and get a new API token of that user (`lakehouse login`): role analyst (or
    the user's, when lower), valid 30 days, named ``lakehouse login · <client>``. Failed attempts count
    against the login page's throttling (429 with ``Retry-After`` when locked out); executor accounts
    cannot log in (403). Audited as ``token.create``."""
    return cli_tokens.issue(ctx, body.user, body.password, address(request), body.client)


@router.get("/current", response_model=TokenSelf, responses=ERRORS)
def current_token(request: Request, ctx: Context = Depends(context)) -> dict[str, Any]:
    """Who the bearer token acts as (`lakehouse whoami`); 401 once it is revoked or expired."""
    token = _bearer(request)
    return cli_tokens.describe(ctx, authenticate_token(ctx, token), token)


@router.delete("/current", status_code=204, responses=ERRORS)
def revoke_current_token(request: Request, ctx: Context = Depends(context)) -> Response:
    """Revoke the bearer token this request is sent with (`lakehouse logout`); audited as
    ``token.revoke``."""
    token = _bearer(request)
    cli_tokens.revoke_own(ctx, authenticate_token(ctx, token), token, address(request))
    return Response(status_code=204)
