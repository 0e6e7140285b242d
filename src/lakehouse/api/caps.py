"""Runtime caps over HTTP (docs/operations.md, Caps): list with usage vs limit and who is throttled,
set (create or replace the cap of a scope), read one, delete. Thin: parse, call one service, answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from lakehouse.api.deps import context, principal
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.services import caps
from lakehouse.services.context import Context

router = APIRouter(prefix="/api", tags=["operations"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 422)}


class CapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(default="default", max_length=64)
    scope: str = Field(description="workspace, pipeline (a run's spec slug: a pipeline or a job), capability "
                                   "or executor")
    value: str | None = Field(default=None, max_length=200,
                              description="the pipeline, capability or executor id; none for a workspace cap")
    max_concurrent: StrictInt | None = Field(default=None, description="leased phases at once")
    runtime_s_per_day: StrictFloat | StrictInt | None = Field(
        default=None, description="phase-attempt seconds per UTC day; over it, new work waits for the next day")
    max_phase_timeout_s: StrictFloat | StrictInt | None = Field(
        default=None, description="a claimed phase's timeout_s is lowered to this")
    max_queued_runs: StrictInt | None = Field(default=None, description="runs waiting in the queue")
    queue_mode: str = Field(default="reject", description="over max_queued_runs: reject (429 with Retry-After) "
                                                          "or hold (accepted, held with the reason on the run)")


class CapUsage(BaseModel):
    concurrent: int
    runtime_s_today: float
    queued_runs: int
    waiting_phases: int
    held_runs: int


class CapOut(BaseModel):
    id: int
    workspace: str
    scope: str
    value: str
    max_concurrent: int | None
    runtime_s_per_day: float | None
    max_phase_timeout_s: float | None
    max_queued_runs: int | None
    queue_mode: str
    updated_by: str
    updated_at: str | None
    usage: CapUsage
    throttled: list[str] = Field(description="the limits reached now (max_concurrent, runtime_s_per_day, "
                                             "max_queued_runs)")


@router.get("/caps", response_model=list[CapOut], responses=ERRORS)
def list_caps(workspace: str | None = Query(default=None, max_length=64), ctx: Context = Depends(context),
              who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    """Every cap the caller may read, with its usage now (derived from the phases table) and what it
    throttles."""
    return caps.report(ctx, who, workspace)


@router.put("/caps", response_model=CapOut, responses=ERRORS)
def set_cap(body: CapIn, ctx: Context = Depends(context), who: Principal = Depends(principal)) -> dict[str, Any]:
    """Create or replace the cap of one scope (limits left out are cleared). Needs ``cap.manage``."""
    limits = {k: getattr(body, k) for k in ("max_concurrent", "runtime_s_per_day", "max_phase_timeout_s",
                                            "max_queued_runs") if getattr(body, k) is not None}
    return caps.set_cap(ctx, who, body.workspace, body.scope, body.value, limits, body.queue_mode)


@router.get("/caps/{cap_id}", response_model=CapOut, responses=ERRORS)
def get_cap(cap_id: int, ctx: Context = Depends(context), who: Principal = Depends(principal)) -> dict[str, Any]:
    return caps.get_cap(ctx, who, cap_id)


@router.delete("/caps/{cap_id}", status_code=204, responses=ERRORS)
def delete_cap(cap_id: int, ctx: Context = Depends(context), who: Principal = Depends(principal)) -> Response:
    caps.delete_cap(ctx, who, cap_id)
    return Response(status_code=204)
