"""Workspaces and their members over HTTP (/api/workspaces…): admins create workspaces and manage
members; everyone lists the workspaces they belong to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api.deps import context, principal
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.services import workspaces
from lakehouse.services.context import Context

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 422)}


class WorkspaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=1, max_length=63, description="lowercase letters, digits, _ and -")
    name: str | None = Field(default=None, max_length=200)


class WorkspaceOut(BaseModel):
    slug: str
    name: str
    created_at: datetime
    role: str = Field(description="the role the caller acts with in this workspace")
    members: int | None = Field(default=None, description="member count (user admins only)")


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(default=None, description="viewer, analyst, engineer or admin; at most the user's "
                                                       "own role (default: theirs, or unchanged)")


class MemberOut(BaseModel):
    workspace: str
    user: str
    role: str = Field(description="the role held in this workspace")
    user_role: str = Field(description="the user's own role, which caps the workspace role")
    effective_role: str
    disabled: bool


class MemberList(BaseModel):
    members: list[MemberOut]


def _address(request: Request) -> str | None:
    from lakehouse.api.deps import address

    return address(request)  # the client address, honouring LAKEHOUSE_TRUSTED_PROXIES


@router.get("", response_model=WorkspaceList, responses=ERRORS)
def list_workspaces(ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """Every workspace for admins; for everyone else the workspaces they are a member of."""
    return {"workspaces": workspaces.list_workspaces(ctx, p)}


@router.post("", response_model=WorkspaceOut, status_code=201, responses=ERRORS)
def create_workspace(body: WorkspaceIn, request: Request, ctx: Context = Depends(context),
                     p: Principal = Depends(principal)) -> dict[str, Any]:
    """Create a workspace with its dev, stage and prod environments (admins only)."""
    return workspaces.create_workspace(ctx, p, body.slug, body.name, _address(request))


@router.get("/{slug}/members", response_model=MemberList, responses=ERRORS)
def list_members(slug: str, ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    return {"members": workspaces.members(ctx, p, slug)}


@router.get("/{slug}/members/{user}", response_model=MemberOut, responses=ERRORS)
def get_member(slug: str, user: str, ctx: Context = Depends(context),
               p: Principal = Depends(principal)) -> dict[str, Any]:
    return workspaces.get_member(ctx, p, slug, user)


@router.put("/{slug}/members/{user}", response_model=MemberOut, responses=ERRORS)
def put_member(slug: str, user: str, body: MemberIn, request: Request, response: Response,
               ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """Add a member (201) or change their workspace role (200); the user's sessions end."""
    member, created = workspaces.set_member(ctx, p, slug, user, body.role, _address(request))
    if created:
        response.status_code = 201
    return member


@router.delete("/{slug}/members/{user}", status_code=204, responses=ERRORS)
def delete_member(slug: str, user: str, request: Request, ctx: Context = Depends(context),
                  p: Principal = Depends(principal)) -> Response:
    workspaces.remove_member(ctx, p, slug, user, _address(request))
    return Response(status_code=204)
