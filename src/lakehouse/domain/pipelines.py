"""Pipeline specs: YAML files validated by pydantic. Pure: parsing text in, models or errors out."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TABLE_REF = re.compile(r"^(bronze|silver|gold)\.[a-z][a-z0-9_]{0,62}$")
LAYERS = ("bronze", "silver", "gold")


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(Spec):
    """Where ingestion reads from: a connection by name, or a URL (``${VAR:-default}`` expanded at run time)."""

    kind: Literal["postgres", "sqlite"]
    connection: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if bool(self.connection) == bool(self.url):
            raise ValueError("give exactly one of connection or url")
        return self


class Incremental(Spec):
    column: str = "write_date"


class SchemaDrift(Spec):
    policy: Literal["allow_additive", "fail", "ignore"] = "allow_additive"


class Ingest(Spec):
    source: str
    layer: Literal["bronze"] = "bronze"
    groups: dict[str, list[str]] = Field(min_length=1)
    incremental: Incremental | None = None
    detect_deletes: bool = False
    schema_drift: SchemaDrift = SchemaDrift()
    key: str = "id"

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        for group, tables in v.items():
            if not IDENT.match(group):
                raise ValueError(f"group name {group!r} must be lower_snake_case")
            if not tables:
                raise ValueError(f"group {group!r} lists no tables")
            for t in tables:
                if not IDENT.match(t):
                    raise ValueError(f"table name {t!r} must be lower_snake_case")
                if t in seen:
                    raise ValueError(f"table {t!r} is in more than one group")
                seen.add(t)
        return v


class Transform(Spec):
    name: str
    output: str
    sql: str | None = None  # a path relative to the spec file
    python: str | None = None  # module:function
    keys: list[str] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)  # derived from the SQL when empty

    @model_validator(mode="after")
    def _one_of(self) -> Transform:
        if bool(self.sql) == bool(self.python):
            raise ValueError("give exactly one of sql or python")
        if self.python and ":" not in self.python:
            raise ValueError("python must be 'module:function'")
        if not TABLE_REF.match(self.output):
            raise ValueError(f"output {self.output!r} must be layer.table with layer in bronze, silver, gold")
        if not IDENT.match(self.name):
            raise ValueError(f"transform name {self.name!r} must be lower_snake_case")
        return self


class CheckBase(Spec):
    table: str
    severity: Literal["error", "warn"] = "error"

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not TABLE_REF.match(v):
            raise ValueError(f"table {v!r} must be layer.table with layer in bronze, silver, gold")
        return v


class RowCount(CheckBase):
    type: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    max_delta_pct: float | None = Field(default=None, gt=0, description="largest change vs the published table")


class NotNull(CheckBase):
    type: Literal["not_null"]
    columns: list[str] = Field(min_length=1)
    max_null_fraction: float = Field(default=0.0, ge=0, le=1)


class Unique(CheckBase):
    type: Literal["unique"]
    columns: list[str] = Field(min_length=1)


class AcceptedValues(CheckBase):
    type: Literal["accepted_values"]
    column: str
    values: list[Any] = Field(min_length=1)


class Relationship(CheckBase):
    type: Literal["relationship"]
    column: str
    to: str
    to_column: str = "id"


class Freshness(CheckBase):
    type: Literal["freshness"]
    column: str
    max_age_hours: float = Field(gt=0)


class SchemaCheck(CheckBase):
    type: Literal["schema"]
    columns: dict[str, str] = Field(min_length=1)


Check = Annotated[RowCount | NotNull | Unique | AcceptedValues | Relationship | Freshness | SchemaCheck,
                  Field(discriminator="type")]


class PipelineSpec(Spec):
    name: str
    version: int = Field(ge=1)
    description: str = ""
    owner: str | None = None
    schedule: str | None = None
    sources: dict[str, Source] = Field(default_factory=dict)
    ingest: Ingest | None = None
    transforms: list[Transform] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1, le=20)
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not IDENT.match(v):
            raise ValueError("pipeline names are lower_snake_case")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError("schedule is a 5-field cron expression, e.g. '0 2 * * *'")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> PipelineSpec:
        if self.ingest is None and not self.transforms:
            raise ValueError("a pipeline needs an ingest section or at least one transform")
        if self.ingest is not None and self.ingest.source not in self.sources:
            raise ValueError(f"ingest.source {self.ingest.source!r} is not one of sources: {sorted(self.sources)}")
        names = [t.name for t in self.transforms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"transform names must be unique: {', '.join(dupes)}")
        outputs = [t.output for t in self.transforms]
        dup_out = sorted({o for o in outputs if outputs.count(o) > 1})
        if dup_out:
            raise ValueError(f"two transforms write {', '.join(dup_out)}")
        return self

    def phases(self) -> list[dict[str, Any]]:
        """The run's phases, in order: ingest (one per table group), transform, validate, publish."""
        common = {"max_attempts": self.max_attempts, **({"timeout_s": self.timeout_s} if self.timeout_s else {})}
        out: list[dict[str, Any]] = []
        if self.ingest:
            for group in self.ingest.groups:
                out.append({"name": f"ingest_{group}", "type": "ingest", "params": {"group": group}, **common})
        if self.transforms:
            out.append({"name": "transform", "type": "transform", "params": {}, **common})
        out.append({"name": "validate", "type": "validate", "params": {}, **common})
        out.append({"name": "publish", "type": "publish", "params": {}, **common})
        return out

    def output_tables(self) -> list[str]:
        tables = [f"bronze.{t}" for ts in (self.ingest.groups.values() if self.ingest else []) for t in ts]
        return tables + [t.output for t in self.transforms]
