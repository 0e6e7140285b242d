"""Pipelines over HTTP: list specs and start runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api import schemas as s
from lakehouse.api.deps import context, require
from lakehouse.api.ops import CREATE_ERRORS, ERRORS
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import pipelines
from lakehouse.services.context import Context

router = APIRouter(prefix="/api/pipelines", tags=["pipelines"])


class PipelineRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    environment: str = "dev"
    params: dict[str, Any] = Field(default_factory=dict)
    workspace: str = "default"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class PipelineOut(BaseModel):
    name: str
    path: str
    valid: bool
    errors: list[str]
    version: int | None
    description: str
    phases: list[str]


class PipelineList(BaseModel):
    pipelines: list[PipelineOut]


@router.get("", response_model=PipelineList, responses=ERRORS)
def list_pipelines(ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"pipelines": pipelines.list_specs(ctx.settings.pipelines_dir)}


@router.post("/{name}/runs", response_model=s.RunOut, status_code=201, responses=CREATE_ERRORS)
def start(name: str, response: Response, body: PipelineRunIn | None = None, ctx: Context = Depends(context),
          p: Principal = Depends(require(Action.RUN_CREATE))) -> dict[str, Any]:
    """Start a run of a pipeline spec; its phases are ingest, transform, validate, publish as the spec says."""
    body = body or PipelineRunIn()
    run, created = pipelines.start_run(ctx, p, name, body.environment, body.params, body.idempotency_key,
                                       body.workspace)
    if not created:
        response.status_code = 200
    return run
