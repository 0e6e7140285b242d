"""What a run request is made of (validated at the edge, used by the services)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
ENVIRONMENTS = ("dev", "stage", "prod")


class PhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=64)
    capability: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_attempts: int = Field(default=3, ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("phase names use letters, digits, _ . : - and start with a letter or digit")
        return v

    @property
    def effective_capability(self) -> str:
        return self.capability or self.type


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec_slug: str = Field(min_length=1, max_length=200)
    git_sha: str = Field(min_length=1, max_length=64)
    phases: list[PhaseSpec] = Field(min_length=1, max_length=1000)
    input_manifest: dict[str, Any] = Field(default_factory=dict)
    environment: str = "dev"
    workspace: str = "default"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    labels: dict[str, str] | None = None

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if v not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> RunRequest:
        names = [p.name for p in self.phases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase names must be unique: {', '.join(dupes)}")
        return self
