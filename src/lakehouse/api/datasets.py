"""The dataset registry over HTTP (/api/datasets…): search, show, register an existing Iceberg table,
change owner / description / tags (services/datasets.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from lakehouse.api.deps import context, require
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import datasets
from lakehouse.services.context import Context

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 401, 403, 404, 409, 422)}
NAME = r"^(bronze|silver|gold)\.[a-z_][a-z0-9_]{0,127}$"


class Status(BaseModel):
    state: str
    model_config = ConfigDict(extra="allow")


class Dataset(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    workspace: str
    environment: str
    format: str
    location: str | None
    metadata_location: str | None
    in_catalog: bool
    owner: str | None
    description: str
    tags: list[str]
    origin: str
    freshness: Status
    quality: Status


class DatasetList(BaseModel):
    datasets: list[Dataset]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, description="logical name layer.table")
    metadata_location: str = Field(min_length=1, max_length=2000,
                                   description="the table's *.metadata.json, inside the warehouse")
    env: str = "dev"
    workspace: str = "default"
    owner: str | None = Field(default=None, max_length=100, description="default: the caller")
    description: str = Field(default="", max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=32)


class UpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[str] | None = Field(default=None, max_length=32, description="replaces the tags")
    add_tags: list[str] = Field(default_factory=list, max_length=32)
    remove_tags: list[str] = Field(default_factory=list, max_length=32)


@router.get("", response_model=DatasetList, responses=ERRORS)
async def search(workspace: str = "default", env: str | None = None,
                 q: str | None = Query(default=None, max_length=200, description="name or description contains"),
                 tag: str | None = Query(default=None, max_length=63), owner: str | None = Query(None, max_length=100),
                 limit: int = Query(default=500, ge=1, le=5000), ctx: Context = Depends(context),
                 p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """Datasets of a workspace with their freshness and quality, by name, tag and owner."""
    items = await run_in_threadpool(datasets.search, ctx, p, workspace=workspace, env=env, q=q, tag=tag,
                                    owner=owner, limit=limit)
    return {"datasets": items}


@router.post("", response_model=Dataset, status_code=201, responses=ERRORS)
async def register(body: RegisterIn, ctx: Context = Depends(context),
                   p: Principal = Depends(require(Action.CATALOG_WRITE))) -> dict[str, Any]:
    """Register an existing Iceberg table by its metadata file (it joins the workspace's catalog)."""
    return await run_in_threadpool(datasets.register, ctx, p, body.name, body.metadata_location, env=body.env,
                                   workspace=body.workspace, owner=body.owner, description=body.description,
                                   tags=body.tags)


@router.get("/{env}/{name}", response_model=Dataset, responses=ERRORS)
async def show(env: str, name: str, workspace: str = "default", ctx: Context = Depends(context),
               p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """One dataset with its status, current snapshot and schema."""
    return await run_in_threadpool(datasets.show, ctx, p, name, env=env, workspace=workspace)


@router.patch("/{env}/{name}", response_model=Dataset, responses=ERRORS)
async def update(env: str, name: str, body: UpdateIn, workspace: str = "default", ctx: Context = Depends(context),
                 p: Principal = Depends(require(Action.CATALOG_WRITE))) -> dict[str, Any]:
    """Change a dataset's owner, description or tags."""
    return await run_in_threadpool(datasets.update, ctx, p, name, env=env, workspace=workspace, owner=body.owner,
                                   description=body.description, tags=body.tags, add_tags=body.add_tags,
                                   remove_tags=body.remove_tags)
