"""Operations over HTTP: alerts (acknowledge, resolve), alert rules, the routing matrix, run scores,
score weights and table freshness (docs/operations.md). Thin: parse, call one service, answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.api.deps import address, context, principal
from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.principal import Principal
from lakehouse.services import alerts, freshness, scores
from lakehouse.services.context import Context

router = APIRouter(prefix="/api", tags=["operations"])
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 422)}


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(default="default", max_length=64)
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(description="run_failed, retries_exhausted, duration_over_baseline, dq_failed, "
                                  "freshness_breached, executor_silent, queue_depth, oldest_queued, score_below")
    severity: str = Field(default="error", description="critical, error, warning or info")
    environment: str | None = None
    job: str | None = Field(default=None, max_length=64)
    pipeline: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    window_s: float | None = Field(default=None, description="grouping window (default 3600 s)")
    enabled: bool = True


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: str | None = None
    environment: str | None = None
    job: str | None = Field(default=None, max_length=64)
    pipeline: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] | None = None
    window_s: float | None = None
    enabled: bool | None = None


class RuleOut(BaseModel):
    id: int
    workspace: str
    name: str
    kind: str
    severity: str
    environment: str | None
    job: str | None
    pipeline: str | None
    team: str | None
    params: dict[str, Any]
    window_s: float
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(default="default", max_length=64)
    severity: str
    channel: str = Field(min_length=1, max_length=100, description="a webhook or smtp connection's name")
    team: str | None = Field(default=None, max_length=64, description="empty: every alert of the workspace")
    level: int = Field(default=0, ge=0, le=9, description="escalation level: 0 is notified first")
    recipients: str | None = Field(default=None, max_length=2000, description="email routes: addresses")
    escalate_after_s: float | None = Field(default=None, description="unacknowledged this long: next level")


class RouteOut(BaseModel):
    id: int
    workspace: str
    severity: str
    team: str | None
    level: int
    channel: str
    channel_type: str
    connection_id: int
    recipients: str | None
    escalate_after_s: float | None
    created_by: str
    created_at: datetime


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float | None


class NotificationOut(BaseModel):
    id: int
    channel: str | None
    event: str
    level: int
    recipients: str | None
    status: str
    attempts: list[AttemptOut]
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


class AlertOut(BaseModel):
    id: int
    workspace: str
    rule: str
    kind: str
    status: str
    severity: str
    team: str | None
    title: str
    group: str
    details: dict[str, Any]
    run_id: str | None
    occurrences: int
    first_at: datetime
    last_at: datetime
    notified_at: datetime | None
    level: int
    escalate_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    notifications: list[NotificationOut] | None = None


class AlertList(BaseModel):
    alerts: list[AlertOut]


class RuleList(BaseModel):
    rules: list[RuleOut]


class RouteList(BaseModel):
    routes: list[RouteOut]


class SignalOut(BaseModel):
    signal: str
    value: Any
    penalty: float
    weight: float
    points_lost: float


class ScoreOut(BaseModel):
    run_id: str
    score: float
    signals: list[SignalOut]
    computed_at: datetime


class ScoredRun(BaseModel):
    run_id: str
    workspace: str
    status: str
    spec_slug: str
    environment: str
    created_at: datetime
    finished_at: datetime | None
    score: float


class ScoreList(BaseModel):
    runs: list[ScoredRun]


class WeightsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float]


class WeightsOut(BaseModel):
    workspace: str
    weights: dict[str, float]
    defaults: dict[str, float]


class FreshnessOut(BaseModel):
    workspace: str
    environment: str
    table: str
    newest_change_at: datetime
    freshness_s: float
    slo_s: float
    breached: bool
    run_id: str | None
    published_at: datetime


class FreshnessList(BaseModel):
    tables: list[FreshnessOut]


# --- alerts ---------------------------------------------------------------------------------------

@router.get("/alerts", response_model=AlertList, responses=ERRORS)
def list_alerts(status: str = Query("active", description="open, acknowledged, resolved, active or all"),
                limit: int = Query(100, ge=1, le=1000), ctx: Context = Depends(context),
                p: Principal = Depends(principal)) -> dict[str, Any]:
    return {"alerts": alerts.list_alerts(ctx, p, status, limit)}


@router.get("/alerts/{alert_id}", response_model=AlertOut, responses=ERRORS)
def get_alert(alert_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """One alert with its notifications and every delivery attempt."""
    return alerts.get_alert(ctx, p, alert_id)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses=ERRORS)
def acknowledge(alert_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal),
                client: str | None = Depends(address)) -> dict[str, Any]:
    """Acknowledge an open alert: it stops escalating and repeating (audited)."""
    return alerts.acknowledge(ctx, p, alert_id, client)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut, responses=ERRORS)
def resolve(alert_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal),
            client: str | None = Depends(address)) -> dict[str, Any]:
    """Resolve an alert by hand (audited); the channels that were told are told."""
    return alerts.resolve(ctx, p, alert_id, client)


# --- rules and routes -----------------------------------------------------------------------------

@router.get("/alert-rules", response_model=RuleList, responses=ERRORS)
def list_rules(ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    return {"rules": alerts.list_rules(ctx, p)}


@router.post("/alert-rules", response_model=RuleOut, status_code=201, responses=ERRORS)
def create_rule(body: RuleIn, ctx: Context = Depends(context), p: Principal = Depends(principal),
                client: str | None = Depends(address)) -> dict[str, Any]:
    values = body.model_dump(exclude={"workspace"})
    return alerts.create_rule(ctx, p, body.workspace, values, client)


@router.get("/alert-rules/{rule_id}", response_model=RuleOut, responses=ERRORS)
def get_rule(rule_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    return alerts.get_rule(ctx, p, rule_id)


@router.put("/alert-rules/{rule_id}", response_model=RuleOut, responses=ERRORS)
def update_rule(rule_id: int, body: RuleUpdate, ctx: Context = Depends(context), p: Principal = Depends(principal),
                client: str | None = Depends(address)) -> dict[str, Any]:
    """Change the fields given (a disabled rule's alerts resolve)."""
    return alerts.update_rule(ctx, p, rule_id, body.model_dump(exclude_unset=True), client)


@router.delete("/alert-rules/{rule_id}", status_code=204, responses=ERRORS)
def delete_rule(rule_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal),
                client: str | None = Depends(address)) -> Response:
    alerts.delete_rule(ctx, p, rule_id, client)
    return Response(status_code=204)


@router.get("/alert-routes", response_model=RouteList, responses=ERRORS)
def list_routes(ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """The routing matrix: severity x team (or the whole workspace) x level -> channel."""
    return {"routes": alerts.list_routes(ctx, p)}


@router.post("/alert-routes", response_model=RouteOut, status_code=201, responses=ERRORS)
def add_route(body: RouteIn, ctx: Context = Depends(context), p: Principal = Depends(principal),
              client: str | None = Depends(address)) -> dict[str, Any]:
    return alerts.add_route(ctx, p, body.workspace, severity_=body.severity, channel=body.channel, team=body.team,
                            level=body.level, recipients=body.recipients, escalate_after_s=body.escalate_after_s,
                            address=client)


@router.delete("/alert-routes/{route_id}", status_code=204, responses=ERRORS)
def delete_route(route_id: int, ctx: Context = Depends(context), p: Principal = Depends(principal),
                 client: str | None = Depends(address)) -> Response:
    alerts.delete_route(ctx, p, route_id, client)
    return Response(status_code=204)


# --- scores and freshness -------------------------------------------------------------------------

@router.get("/runs/{run_id}/score", response_model=ScoreOut, responses=ERRORS)
def run_score(run_id: str, ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """A finished run's score (0-100) with the breakdown of every signal."""
    return scores.run_score(ctx, p, run_id)


@router.get("/run-scores", response_model=ScoreList, responses=ERRORS)
def run_scores(order: str = Query("created", description="created (newest first), score (worst first), -score"),
               below: float | None = Query(None, ge=0, le=100), environment: str | None = None,
               spec_slug: str | None = None, limit: int = Query(50, ge=1, le=500), ctx: Context = Depends(context),
               p: Principal = Depends(principal)) -> dict[str, Any]:
    """Scored runs, sortable by score."""
    return {"runs": scores.list_scores(ctx, p, environment=environment, spec_slug=spec_slug, below=below,
                                       order=order, limit=limit)}


@router.get("/score-weights/{workspace}", response_model=WeightsOut, responses=ERRORS)
def get_weights(workspace: str, ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    return scores.get_weights(ctx, p, workspace)


@router.put("/score-weights/{workspace}", response_model=WeightsOut, responses=ERRORS)
def set_weights(workspace: str, body: WeightsIn, ctx: Context = Depends(context), p: Principal = Depends(principal),
                client: str | None = Depends(address)) -> dict[str, Any]:
    return scores.set_weights(ctx, p, workspace, body.weights, client)


@router.get("/freshness", response_model=FreshnessList, responses=ERRORS)
def table_freshness(environment: str | None = None, slo_s: float = Query(900.0, gt=0),
                    ctx: Context = Depends(context), p: Principal = Depends(principal)) -> dict[str, Any]:
    """Every published table's freshness (now minus the newest source change it contains)."""
    return {"tables": freshness.list_freshness(ctx, p, environment, slo_s)}
