"""What a run request is made of (validated at the edge, used by the services)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lakehouse.domain.rules import (
    CAPABILITY,
    ENVIRONMENTS,
    NAME,
    NAME_RE,
    NO_NUL,
    WORKSPACE,
    Environment,
    rule,
)

__all__ = ["ENVIRONMENTS", "NAME_RE", "Environment", "PhaseName", "PhaseSpec", "RunRequest", "SpecSlug"]

PhaseName = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME), rule(
    "validation_error", "phase names use letters, digits, _ . : - and start with a letter or digit")]
SpecSlug = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME), rule(
    "validation_error", "a pipeline slug uses letters, digits, _ . : - and starts with a letter or digit")]
Capability = Annotated[str, Field(min_length=1, max_length=64, pattern=CAPABILITY), rule(
    "validation_error", "a phase type or capability uses letters, digits, _ . : - (at most 64) and starts "
                          "with a letter or digit")]
EnvironmentField = Annotated[Environment, rule(
    "validation_error", f"environment must be one of {', '.join(ENVIRONMENTS)}")]


class PhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PhaseName
    type: Capability
    capability: Capability | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_attempts: int = Field(default=3, ge=1, le=100)

    @property
    def effective_capability(self) -> str:
        return self.capability or self.type


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    spec_slug: SpecSlug
    git_sha: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    phases: list[PhaseSpec] = Field(min_length=1, max_length=1000)
    input_manifest: dict[str, Any] = Field(default_factory=dict)
    environment: EnvironmentField = Field(default=Environment.DEV, validate_default=True)
    workspace: str = Field(default="default", pattern=WORKSPACE)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> RunRequest:
        names = [p.name for p in self.phases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase names must be unique: {', '.join(dupes)}")
        return self
