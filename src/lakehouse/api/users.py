"""User administration over HTTP (/api/users…)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from lakehouse.api.deps import address, context, require
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import sessions
from lakehouse.services.context import Context

router = APIRouter(prefix="/api/users", tags=["users"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 404)}


class UnlockOut(BaseModel):
    user: str
    cleared: int = Field(description="(account, address) pairs whose login throttling was cleared")


@router.post("/{name}/unlock", response_model=UnlockOut, responses=ERRORS)
def unlock(name: str, request: Request, ctx: Context = Depends(context),
           p: Principal = Depends(require(Action.USER_ADMIN))) -> dict[str, Any]:
    """Clear the login throttling of a user from every address (user admins only; audited as
    ``user.unlock``)."""
    return {"user": name, "cleared": sessions.unlock(ctx, p, name, address(request))}
