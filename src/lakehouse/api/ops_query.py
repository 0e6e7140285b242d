"""``POST /ops/runs/{run_id}/query``: the lease holder of a ``query`` phase has the control plane run
its SQL as the run's creator, inside the run's workspace and environment (handlers/query.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api import schemas as s
from lakehouse.api.deps import context, require
from lakehouse.api.errors import SQL_BUSY, STORE_ERRORS
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import phase_query
from lakehouse.services.context import Context

router = APIRouter(prefix="/ops", tags=["executor contract"])
ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": s.ErrorResponse} for c in (400, 401, 403, 404, 409, 413, 422)
}


class PhaseQueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: str = Field(min_length=1, max_length=200)
    sql: str = Field(min_length=1, max_length=1_000_000)
    preview_rows: int = Field(default=20, ge=0, le=1000)
    name: str = Field(default="result.parquet", min_length=1, max_length=200)


class PhaseQueryOut(BaseModel):
    query: dict[str, Any]
    artifact: dict[str, Any] | None
    acting_as: str
    workspace: str
    environment: str


@router.post("/runs/{run_id}/query", response_model=PhaseQueryOut, responses={**ERRORS, **SQL_BUSY, **STORE_ERRORS})
async def phase_query_call(run_id: str, body: PhaseQueryIn, ctx: Context = Depends(context),
                           p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """Run a ``query`` phase's SQL for its lease holder, as the run's creator, in the run's workspace;
    the result becomes the phase's artifact."""
    return await phase_query.run_for_lease(ctx, p, run_id, body.lease_token, body.sql, body.preview_rows, body.name)
