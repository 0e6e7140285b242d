"""Wire schemas of the executor contract (separate from tables and domain models).

They state the rules the server enforces (domain/rules.py): sha256 format, name patterns, the
environment enum, event types and levels, and run/phase statuses, so that the OpenAPI document lists
them for clients and fuzzers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.domain.events import EventType, ExecutorEventType, Level
from lakehouse.domain.rules import EXECUTOR_ID, NO_NUL, SHA256, Environment, rule
from lakehouse.domain.runs import Capability, PhaseName
from lakehouse.domain.states import PhaseStatus, RunStatus


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


Sha256 = Annotated[str, Field(min_length=64, max_length=64, pattern=SHA256),
                   rule("invalid_sha256", "sha256 must be 64 lowercase hex characters")]
Sha256Param = Annotated[str, Path(pattern=SHA256, description="64 lowercase hex characters"),
                        rule("invalid_sha256", "sha256 must be 64 lowercase hex characters")]
ExecutorId = Annotated[str, Field(min_length=1, max_length=200, pattern=EXECUTOR_ID), rule(
    "validation_error", "an executor id uses letters, digits, _ . : @ / + - (at most 200) and starts with a "
                           "letter or digit")]
RunRef = Annotated[str, Field(min_length=1, max_length=36, pattern=NO_NUL)]
ExecutorEvent = Annotated[ExecutorEventType, rule(
    "invalid_event_type", "executors may post only " + ", ".join(t.value for t in ExecutorEventType) + " events")]
EventLevel = Annotated[Level, rule("invalid_level", "level must be one of " + ", ".join(lv.value for lv in Level))]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class EventIn(Strict):
    event_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    type: ExecutorEvent
    phase: PhaseName | None = None
    ts: datetime
    level: EventLevel = Field(default=Level.INFO, validate_default=True)
    message: str = Field(default="", max_length=10_000)
    payload: dict[str, Any] = Field(default_factory=dict)


class EventsIn(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)
    lease_token: str | None = None


class ClaimIn(Strict):
    executor_id: ExecutorId
    capabilities: list[Capability] = Field(max_length=100)
    wait_s: float = Field(default=0, ge=0, le=60)
    max_phases: int = Field(default=1, ge=1, le=100)
    start: bool = True
    cached_runs: list[RunRef] = Field(
        default_factory=list, max_length=100,
        description="runs whose input_manifest this executor already holds: their claims carry it as null")


class HeartbeatIn(Strict):
    lease_token: str = Field(min_length=1, max_length=100)
    progress: dict[str, Any] | None = None
    events: list[EventIn] | None = Field(default=None, max_length=1000)


class LeaseBeatIn(Strict):
    run_id: str = Field(min_length=1, max_length=36)
    lease_token: str = Field(min_length=1, max_length=100)
    progress: dict[str, Any] | None = None
    events: list[EventIn] | None = Field(default=None, max_length=1000)


class HeartbeatManyIn(Strict):
    leases: list[LeaseBeatIn] = Field(min_length=1, max_length=500)


class LeaseBeatResult(BaseModel):
    run_id: str
    lease_expires_at: datetime | None = None
    status: PhaseStatus | None = None
    error: ErrorBody | None = None


class HeartbeatManyOut(BaseModel):
    results: list[LeaseBeatResult]


class ClaimNextIn(Strict):
    executor_id: ExecutorId
    capabilities: list[Capability] = Field(max_length=100)
    max_phases: int = Field(default=1, ge=1, le=100)
    cached_runs: list[RunRef] = Field(
        default_factory=list, max_length=100,
        description="runs whose input_manifest this executor already holds: their claims carry it as null")


class CompleteIn(Strict):
    lease_token: str = Field(min_length=1, max_length=100)
    output_manifest: dict[str, Any] = Field(default_factory=dict)
    events: list[EventIn] | None = Field(default=None, max_length=1000)
    claim_next: ClaimNextIn | None = None


class CompletionIn(Strict):
    run_id: str = Field(min_length=1, max_length=36)
    lease_token: str = Field(min_length=1, max_length=100)
    output_manifest: dict[str, Any] = Field(default_factory=dict)
    events: list[EventIn] | None = Field(default=None, max_length=1000)


class CompleteManyIn(Strict):
    completions: list[CompletionIn] = Field(min_length=1, max_length=500)
    claim_next: ClaimNextIn | None = None


class CompletionResult(BaseModel):
    run_id: str
    run_status: RunStatus | None = None
    phase: str | None = None
    phase_status: PhaseStatus | None = None
    error: ErrorBody | None = None


class CompleteManyOut(BaseModel):
    results: list[CompletionResult]
    next: list[Claim] | None = None


class FailIn(Strict):
    lease_token: str = Field(min_length=1, max_length=100)
    error: str = Field(min_length=1, max_length=100_000)
    retryable: bool = True
    events: list[EventIn] | None = Field(default=None, max_length=1000)
    kind: Literal["error", "timeout"] = Field(
        default="error", description="`timeout`: the executor stopped the phase past its timeout_s "
                                     "(the attempt is recorded as timed_out)")


class ReleaseIn(Strict):
    lease_token: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="released by the executor", max_length=1000)


class ReleaseOut(BaseModel):
    phase: str
    phase_status: PhaseStatus


class ArtifactIn(Strict):
    run_id: str = Field(min_length=1, max_length=36)
    phase: PhaseName
    name: str = Field(min_length=1, max_length=300)
    sha256: Sha256
    size_bytes: int = Field(ge=0)
    media_type: str = Field(min_length=1, max_length=200)
    uri: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Claim(BaseModel):
    run_id: str
    phase: str
    phase_type: str
    attempt: int
    max_attempts: int
    lease_token: str
    lease_expires_at: datetime
    lease_ttl_s: float
    timeout_s: float | None
    params: dict[str, Any]
    input_manifest: dict[str, Any] | None = Field(
        description="the run's input manifest; null when the claim listed the run in cached_runs")
    spec_slug: str
    git_sha: str
    environment: Environment
    workspace: str = Field(description="the run's workspace (slug), from the server's run record")
    created_by: str | None = Field(description="who created the run, from the server's run record")
    previous_outputs: dict[str, Any]


class Claims(BaseModel):
    claims: list[Claim]


class PhaseOut(BaseModel):
    name: str
    type: str
    capability: str
    status: PhaseStatus
    attempt: int
    max_attempts: int
    timeout_s: float | None
    params: dict[str, Any]
    executor_id: str | None
    available_at: datetime | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    progress: dict[str, Any] | None
    output_manifest: dict[str, Any] | None
    error: str | None


class RunOut(BaseModel):
    run_id: str
    status: RunStatus
    spec_slug: str
    git_sha: str
    environment: Environment
    workspace: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str | None
    idempotency_key: str | None
    input_manifest: dict[str, Any]
    error: str | None
    labels: dict[str, str] | None
    last_seq: int
    phases: list[PhaseOut]
    held: dict[str, Any] | None = Field(default=None, description="why a queue cap holds the run out of the "
                                        "queue (reason, cap_id, held_at); null when it is not held")


class RunSummary(BaseModel):
    run_id: str
    status: RunStatus
    spec_slug: str
    git_sha: str
    environment: Environment
    workspace: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class RunList(BaseModel):
    runs: list[RunSummary]
    next_before: str | None


class EventOut(BaseModel):
    seq: int
    event_id: str
    type: EventType
    run_id: str
    phase: str | None
    ts: datetime
    level: Level
    message: str
    payload: dict[str, Any]


class EventList(BaseModel):
    events: list[EventOut]


class Accepted(BaseModel):
    accepted: int


class HeartbeatOut(BaseModel):
    lease_expires_at: datetime
    status: PhaseStatus


class CompleteOut(BaseModel):
    run_status: RunStatus
    phase: str
    phase_status: PhaseStatus
    next: list[Claim] | None = None


class FailOut(BaseModel):
    run_status: RunStatus
    phase: str
    requeued: bool


class ArtifactOut(BaseModel):
    id: int
    run_id: str
    phase: str
    name: str
    sha256: Annotated[str, Field(pattern=SHA256)]
    size_bytes: int
    media_type: str
    uri: str | None
    metadata: dict[str, Any]
    created_at: datetime


class ArtifactList(BaseModel):
    artifacts: list[ArtifactOut]


class UploadOut(BaseModel):
    sha256: Annotated[str, Field(pattern=SHA256)]
    size_bytes: int
    stored: bool


class ExecutorOut(BaseModel):
    executor_id: str
    capabilities: list[str]
    first_seen_at: datetime
    last_seen_at: datetime
    current_run_id: str | None
    current_phase: str | None
    silent_s: float
    stale: bool
    stopped: bool = False
    state: Literal["online", "stale", "stopped"] = "online"
    stop_reason: str | None = None


class ExecutorList(BaseModel):
    executors: list[ExecutorOut]


class ExecutorStoppedIn(Strict):
    reason: str = Field(default="stopped cleanly", max_length=200)


class ExecutorStoppedOut(BaseModel):
    executor_id: str
    state: Literal["stopped"]
    stop_reason: str


class ExecutorsForgotten(BaseModel):
    forgotten: list[str]


class Health(BaseModel):
    status: str
    version: str
    database: str
