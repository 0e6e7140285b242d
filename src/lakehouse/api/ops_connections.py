"""``POST /ops/runs/{run_id}/connections/{name}``: the lease holder of a phase gets what it needs of a
stored connection the run declared, for that lease only (services/lease_secrets.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api import schemas as s
from lakehouse.api.deps import context, require
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import lease_secrets
from lakehouse.services.context import Context

router = APIRouter(prefix="/ops", tags=["executor contract"])
ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": s.ErrorResponse} for c in (400, 401, 403, 404, 409, 413, 422)
}


class LeaseConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: str = Field(min_length=1, max_length=200)


class LeaseConnectionOut(BaseModel):
    name: str
    type: str
    config: dict[str, Any]
    secrets: dict[str, str]
    url: str | None


@router.post("/runs/{run_id}/connections/{name}", response_model=LeaseConnectionOut, responses=ERRORS)
def lease_connection(body: LeaseConnectionIn, run_id: str = Path(max_length=64),
                     name: str = Path(min_length=1, max_length=100, pattern=r"^[^\x00/]+$"),
                     ctx: Context = Depends(context),
                     p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """A connection the run declared, with its secrets, for the current holder of a lease on the run
    (the run's creator must still be allowed to use connections in the run's workspace; the target must
    be in the egress allow-list). Never logged; recorded in the trail as ``CONNECTION_USED``."""
    return lease_secrets.for_lease(ctx, p, run_id, body.lease_token, name)
