"""Jobs over HTTP: definitions and versions, runs (now, with other parameters, rerun), pause/resume,
archive, and backfills. Routes parse, call one service, answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api import schemas as s
from lakehouse.api.deps import context, require
from lakehouse.api.ops import CREATE_ERRORS, ERRORS
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import backfills, job_runs, jobs, promotions
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
WS = Query("default", max_length=64, description="the job's workspace")


class JobIn(BaseModel):
    """A job definition as a JSON object (``definition``) or as YAML text (``yaml``)."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(default="default", max_length=64)
    definition: dict[str, Any] | None = None
    yaml: str | None = Field(default=None, max_length=1_000_000)

    def body(self) -> dict[str, Any] | str:
        if (self.definition is None) == (self.yaml is None):
            raise InvalidInput("give exactly one of definition or yaml", code="invalid_job",
                               details=[{"field": "definition", "message": "give exactly one of definition or yaml"}])
        return self.definition if self.definition is not None else str(self.yaml)


class JobOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    workspace: str
    type: str
    status: str
    version: int
    content_hash: str
    git_sha: str | None
    paused: bool
    definition: dict[str, Any]
    next_fire_at: datetime | None
    next_fires: list[datetime]
    outcome: str | None = None


class JobList(BaseModel):
    jobs: list[dict[str, Any]]


class VersionList(BaseModel):
    versions: list[dict[str, Any]]


class DiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")
    to: int
    diff: str


class JobRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None
    version: int | None = Field(default=None, ge=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class RerunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None


class JobRunList(BaseModel):
    runs: list[dict[str, Any]]


class BackfillIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", max_length=10)
    to: str = Field(max_length=10)
    partitions: list[str] | None = Field(default=None, max_length=1000)
    max_concurrent: int = Field(default=4, ge=1, le=10_000)
    params: dict[str, Any] = Field(default_factory=dict)
    environment: str | None = None


class BackfillList(BaseModel):
    backfills: list[dict[str, Any]]


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=16, description="stage or prod")
    version: int | None = Field(default=None, ge=1, description="default: the job's current version")
    comment: str | None = Field(default=None, max_length=2000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000)


class GatesIn(BaseModel):
    """Gates to change; the ones left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    min_runs: int | None = Field(default=None, ge=0, le=100)
    require_dq: bool | None = None
    require_approval: bool | None = None
    approver_role: str | None = Field(default=None, max_length=16)
    approver_not_author: bool | None = None


class GatesOut(BaseModel):
    gates: dict[str, dict[str, Any]]


@router.post("", response_model=JobOut, status_code=201, responses=ERRORS)
def create_job(body: JobIn, ctx: Context = Depends(context),
               p: Principal = Depends(require(Action.JOB_MANAGE))) -> dict[str, Any]:
    """Create a job (version 1); a name the workspace already has is 409."""
    saved = jobs.save(ctx, p, body.workspace, body.body(), mode="create")
    return {**saved.job, "outcome": saved.outcome}


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(workspace: str | None = Query(None, max_length=64), ctx: Context = Depends(context),
              p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"jobs": jobs.list_jobs(ctx, p, workspace)}


@router.get("/promotion-gates", response_model=GatesOut, responses=ERRORS)
def promotion_gates(workspace: str = WS, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """What a job version needs to reach stage and prod in this workspace."""
    return {"gates": promotions.get_gates(ctx, p, workspace)}


@router.put("/promotion-gates/{environment}", responses=ERRORS)
def set_promotion_gates(environment: str, body: GatesIn, workspace: str = WS, ctx: Context = Depends(context),
                        p: Principal = Depends(require(Action.ADMIN))) -> dict[str, Any]:
    """Change the gates of stage or prod (workspace admins; audited)."""
    return promotions.set_gates(ctx, p, workspace, environment, body.model_dump(exclude_none=True))


@router.get("/{name}", response_model=JobOut, responses=ERRORS)
def get_job(name: str, workspace: str = WS, ctx: Context = Depends(context),
            p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """A job: its current version, schedule with the next fire times, recent runs."""
    return jobs.get_job(ctx, p, workspace, name)


@router.put("/{name}", response_model=JobOut, responses=ERRORS)
def update_job(name: str, body: JobIn, ctx: Context = Depends(context),
               p: Principal = Depends(require(Action.JOB_MANAGE))) -> dict[str, Any]:
    """A new version (``outcome: updated``), or nothing when the definition is the current one
    (``unchanged``)."""
    d = jobs.parse(body.body())
    if d.name != name:
        raise InvalidInput(f"name: the definition names {d.name!r}, not {name!r} (jobs are not renamed)",
                           code="invalid_job", details=[{"field": "name", "message": "does not match the URL"}])
    saved = jobs.save(ctx, p, body.workspace, d, mode="update")
    return {**saved.job, "outcome": saved.outcome}


@router.delete("/{name}", responses=ERRORS)
def archive_job(name: str, workspace: str = WS, ctx: Context = Depends(context),
                p: Principal = Depends(require(Action.JOB_MANAGE))) -> dict[str, Any]:
    """Archive a job: its schedule and triggers stop; versions and runs stay."""
    return jobs.archive(ctx, p, workspace, name)


@router.post("/{name}/pause", response_model=JobOut, responses=ERRORS)
def pause(name: str, workspace: str = WS, ctx: Context = Depends(context),
          p: Principal = Depends(require(Action.JOB_MANAGE))) -> dict[str, Any]:
    return jobs.set_paused(ctx, p, workspace, name, True)


@router.post("/{name}/resume", response_model=JobOut, responses=ERRORS)
def resume(name: str, workspace: str = WS, ctx: Context = Depends(context),
           p: Principal = Depends(require(Action.JOB_MANAGE))) -> dict[str, Any]:
    return jobs.set_paused(ctx, p, workspace, name, False)


@router.get("/{name}/versions", response_model=VersionList, responses=ERRORS)
def versions(name: str, workspace: str = WS, ctx: Context = Depends(context),
             p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"versions": jobs.versions(ctx, p, workspace, name)}


@router.get("/{name}/versions/{number}", responses=ERRORS)
def version(name: str, number: int, workspace: str = WS, ctx: Context = Depends(context),
            p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return jobs.version(ctx, p, workspace, name, number)


@router.get("/{name}/diff", response_model=DiffOut, responses=ERRORS)
def version_diff(name: str, from_: int = Query(..., alias="from", ge=1), to: int = Query(..., ge=1),
                 workspace: str = WS, ctx: Context = Depends(context),
                 p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """A unified diff of the canonical YAML of two versions."""
    return jobs.version_diff(ctx, p, workspace, name, from_, to)


@router.post("/{name}/runs", response_model=s.RunOut, status_code=201, responses=CREATE_ERRORS)
def run_job(name: str, response: Response, body: JobRunIn | None = None, workspace: str = WS,
            ctx: Context = Depends(context), p: Principal = Depends(require(Action.JOB_RUN))) -> dict[str, Any]:
    """Run a job now with parameter overrides (a repeated ``idempotency_key`` answers 200 with that run)."""
    body = body or JobRunIn()
    run, created = job_runs.run_job(ctx, p, workspace, name, body.params, environment=body.environment,
                                    version=body.version, idempotency_key=body.idempotency_key)
    if not created:
        response.status_code = 200
    return run


@router.get("/{name}/runs", response_model=JobRunList, responses=ERRORS)
def runs_of_job(name: str, workspace: str = WS, limit: int = Query(50, ge=1, le=500),
                ctx: Context = Depends(context), p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"runs": job_runs.job_runs(ctx, p, workspace, name, limit)}


@router.post("/runs/{run_id}/rerun", response_model=s.RunOut, status_code=201, responses=CREATE_ERRORS)
def rerun(run_id: str, body: RerunIn | None = None, ctx: Context = Depends(context),
          p: Principal = Depends(require(Action.JOB_RUN))) -> dict[str, Any]:
    """Run a job run again with its version and parameters; ``params`` overrides some of them."""
    body = body or RerunIn()
    run, _ = job_runs.rerun(ctx, p, run_id, body.params, body.environment)
    return run


@router.post("/{name}/backfills", status_code=201, responses=ERRORS)
def create_backfill(name: str, body: BackfillIn, workspace: str = WS, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.JOB_RUN))) -> dict[str, Any]:
    """One run per logical date from ``from`` to ``to`` (and per partition), at most ``max_concurrent``
    queued at once."""
    return backfills.create(ctx, p, workspace, name, backfills.parse_date(body.from_, "from"),
                            backfills.parse_date(body.to, "to"), partitions=body.partitions,
                            max_concurrent=body.max_concurrent, params=body.params, environment=body.environment)


@router.get("/{name}/backfills", response_model=BackfillList, responses=ERRORS)
def list_backfills(name: str, workspace: str = WS, ctx: Context = Depends(context),
                   p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    return {"backfills": backfills.list_for_job(ctx, p, workspace, name)}


@router.get("/backfills/{backfill_id}", responses=ERRORS)
def get_backfill(backfill_id: str, ctx: Context = Depends(context),
                 p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """A backfill with its progress (done / running / failed / queued)."""
    return backfills.get(ctx, p, backfill_id)


@router.post("/backfills/{backfill_id}/cancel", responses=ERRORS)
def cancel_backfill(backfill_id: str, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.RUN_CANCEL))) -> dict[str, Any]:
    return backfills.cancel(ctx, p, backfill_id)


@router.post("/backfills/{backfill_id}/retry", responses=ERRORS)
def retry_backfill(backfill_id: str, ctx: Context = Depends(context),
                   p: Principal = Depends(require(Action.JOB_RUN))) -> dict[str, Any]:
    """New runs for the backfill's failed (and cancelled) runs only."""
    return backfills.retry_failed(ctx, p, backfill_id)


@router.get("/{name}/promotions", responses=ERRORS)
def promotion_state(name: str, workspace: str = WS, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.READ))) -> dict[str, Any]:
    """Per environment: the promoted version, the promotion waiting, the gates and how the current
    version fares against them; and the history."""
    return promotions.state(ctx, p, workspace, name)


@router.post("/{name}/promotions", status_code=201, responses=ERRORS)
def promote(name: str, body: PromoteIn, workspace: str = WS, ctx: Context = Depends(context),
            p: Principal = Depends(require(Action.JOB_PROMOTE))) -> dict[str, Any]:
    """Promote a version to stage or prod through the gates: 409 ``promotion_gate_failed`` names each
    gate and why; ``status: pending`` when an approver must approve."""
    return promotions.promote(ctx, p, workspace, name, body.to, body.version, body.comment)


@router.post("/{name}/promotions/{environment}/approve", responses=ERRORS)
def approve_promotion(name: str, environment: str, body: DecisionIn | None = None, workspace: str = WS,
                      ctx: Context = Depends(context),
                      p: Principal = Depends(require(Action.JOB_APPROVE))) -> dict[str, Any]:
    return promotions.approve(ctx, p, workspace, name, environment, (body or DecisionIn()).comment)


@router.post("/{name}/promotions/{environment}/reject", responses=ERRORS)
def reject_promotion(name: str, environment: str, body: DecisionIn | None = None, workspace: str = WS,
                     ctx: Context = Depends(context),
                     p: Principal = Depends(require(Action.JOB_APPROVE))) -> dict[str, Any]:
    return promotions.reject(ctx, p, workspace, name, environment, (body or DecisionIn()).comment)
