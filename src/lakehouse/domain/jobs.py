"""Jobs: named, versioned, parameterised definitions of work. Pure: a definition in, a canonical text,
its content hash, resolved parameters or field errors out.

A version is immutable: its canonical YAML (sorted keys, defaults filled in) is what is hashed,
stored, diffed and turned into runs. Pause state, archival and promotion are not part of it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakehouse.domain.pipelines import IDENT, TABLE_REF, PipelineSpec
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.domain.schedules import check_cron, check_timezone
from lakehouse.domain.states import IllegalTransition

PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# names every run gets without declaring them (they may not be declared)
BUILTIN_PARAMS = ("logical_date", "upstream_run_id", "partition")


class JobType(StrEnum):
    PIPELINE = "pipeline"
    SQL = "sql"
    PYTHON = "python"
    SPARK = "spark"
    DBT = "dbt"


class JobStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.ACTIVE: frozenset({JobStatus.ARCHIVED}),
    JobStatus.ARCHIVED: frozenset({JobStatus.ACTIVE}),  # a re-create of an archived name revives it
}


class RunTrigger(StrEnum):
    """Why a job run exists (recorded on the run's labels and the jobs↔runs link)."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    UPSTREAM = "upstream"  # a job it depends on succeeded
    BACKFILL = "backfill"
    RERUN = "rerun"


class BackfillStatus(StrEnum):
    RUNNING = "running"  # runs being released and executed
    SUCCEEDED = "succeeded"  # every run succeeded
    FAILED = "failed"  # every run finished, some did not succeed
    CANCELLED = "cancelled"


BACKFILL_FINISHED = frozenset({BackfillStatus.SUCCEEDED, BackfillStatus.FAILED, BackfillStatus.CANCELLED})
BACKFILL_TRANSITIONS: dict[BackfillStatus, frozenset[BackfillStatus]] = {
    BackfillStatus.RUNNING: frozenset({BackfillStatus.SUCCEEDED, BackfillStatus.FAILED, BackfillStatus.CANCELLED}),
    BackfillStatus.SUCCEEDED: frozenset(),
    BackfillStatus.FAILED: frozenset({BackfillStatus.RUNNING}),  # retry of its failed runs
    BackfillStatus.CANCELLED: frozenset({BackfillStatus.RUNNING}),  # retry of its failed and cancelled runs
}


def backfill_transition(current: str, target: BackfillStatus) -> BackfillStatus:
    src = BackfillStatus(current)
    if target not in BACKFILL_TRANSITIONS[src]:
        raise IllegalTransition(f"backfill cannot go from {src} to {target}")
    return target


def job_transition(current: str, target: JobStatus) -> JobStatus:
    src = JobStatus(current)
    if target not in JOB_TRANSITIONS[src]:
        raise IllegalTransition(f"job cannot go from {src} to {target}")
    return target


class ParamType(StrEnum):
    STRING = "string"
    INT = "int"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"
    ENUM = "enum"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamDef(Model):
    type: ParamType = ParamType.STRING
    default: Any = None
    values: list[str] | None = None  # the choices of an enum
    description: str = ""

    @model_validator(mode="after")
    def _coherent(self) -> ParamDef:
        if self.type is ParamType.ENUM and not self.values:
            raise ValueError("an enum parameter lists its values")
        if self.type is not ParamType.ENUM and self.values is not None:
            raise ValueError("only enum parameters list values")
        if self.default is not None:
            self.default = coerce(self, self.default)
        return self

    @property
    def required(self) -> bool:
        return self.default is None


class PipelineJob(Model):
    """One of the YAML pipelines by name, or a pipeline spec given inline with its SQL texts."""

    name: str | None = None
    spec: PipelineSpec | None = None
    sql: dict[str, str] = Field(default_factory=dict)  # transform name → SQL text, for an inline spec

    @model_validator(mode="after")
    def _one_of(self) -> PipelineJob:
        if (self.name is None) == (self.spec is None):
            raise ValueError("give exactly one of name or spec")
        if self.spec is not None:
            missing = [t.name for t in self.spec.transforms if t.sql and t.name not in self.sql]
            if missing:
                raise ValueError(f"an inline spec carries the SQL of every SQL transform; missing: {missing}")
        return self


class SqlJob(Model):
    query: str = Field(min_length=1, max_length=1_000_000)  # one statement or a script; {{ param }} placeholders
    engine: Literal["duckdb", "trino"] = "duckdb"
    target: str | None = None  # layer.table written through the lake
    mode: Literal["overwrite", "append", "merge"] = "overwrite"
    keys: list[str] = Field(default_factory=list)  # merge keys
    # a PostgreSQL connection of the workspace: the statement runs there (read-only), not on the lake
    connection: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _coherent(self) -> SqlJob:
        if self.connection is not None and self.engine != "duckdb":
            raise ValueError("sql.connection runs the statement on that PostgreSQL source; engine applies to "
                             "the lakehouse only (leave it duckdb)")
        if self.target is not None and not TABLE_REF.match(self.target):
            raise ValueError(f"target {self.target!r} must be layer.table with layer in bronze, silver, gold")
        if self.mode == "merge" and not self.keys:
            raise ValueError("a merge names its keys")
        if self.target is None and self.mode != "overwrite":
            raise ValueError("mode applies to a target table only")
        return self


class PythonJob(Model):
    callable: str = Field(min_length=3, max_length=300)  # module:function
    params: dict[str, Any] = Field(default_factory=dict)  # static arguments; run parameters override

    @field_validator("callable")
    @classmethod
    def _target(cls, v: str) -> str:
        module, sep, func = v.partition(":")
        if not sep or not module or not func:
            raise ValueError("callable is 'module:function'")
        return v


class Schedule(Model):
    cron: str
    timezone: str = "UTC"
    start: datetime | None = None  # no tick before (a naive value is in the schedule's time zone)
    end: datetime | None = None  # no tick after
    catchup: Literal["none", "latest", "all"] = "none"
    max_catchup: int = Field(default=10, ge=1, le=1000)
    environment: str = "dev"

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if v not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        return v

    @model_validator(mode="after")
    def _range(self) -> Schedule:
        if self.start and self.end and _naive(self.end) <= _naive(self.start):
            raise ValueError("end must be after start")
        return self


def _naive(d: datetime) -> datetime:
    return d.replace(tzinfo=None)


class Trigger(Model):
    on_success_of: str  # a job of the same workspace

    @field_validator("on_success_of")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)


class JobDefinition(Model):
    name: str
    type: JobType
    description: str = ""
    owner: str | None = None
    environment: str = "dev"  # where a manual run goes unless told otherwise
    params: dict[str, ParamDef] = Field(default_factory=dict)
    pipeline: PipelineJob | None = None
    sql: SqlJob | None = None
    python: PythonJob | None = None
    spark: dict[str, Any] | None = None  # handlers come with their issue; the model carries them now
    dbt: dict[str, Any] | None = None
    schedule: Schedule | None = None
    triggers: list[Trigger] = Field(default_factory=list, max_length=20)
    connections: list[str] = Field(default_factory=list, max_length=20)
    max_attempts: int = Field(default=3, ge=1, le=20)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if v not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, ParamDef]) -> dict[str, ParamDef]:
        for name in v:
            if not PARAM_NAME.match(name):
                raise ValueError(f"parameter name {name!r} must be lower_snake_case")
            if name in BUILTIN_PARAMS:
                raise ValueError(f"parameter {name!r} is given to every run; do not declare it")
        return v

    @model_validator(mode="after")
    def _body(self) -> JobDefinition:
        bodies = {t: getattr(self, t.value) for t in JobType}
        if bodies[self.type] is None:
            raise ValueError(f"a {self.type.value} job needs a {self.type.value} section")
        extra = sorted(t.value for t, b in bodies.items() if b is not None and t is not self.type)
        if extra:
            raise ValueError(f"a {self.type.value} job has no {', '.join(extra)} section")
        if any(t.on_success_of == self.name for t in self.triggers):
            raise ValueError("a job cannot trigger itself")
        if self.sql is not None:
            unknown = [n for n in placeholders(self.sql.query) if n not in self.params and n not in BUILTIN_PARAMS]
            if unknown:
                raise ValueError(f"sql.query uses undeclared parameters: {', '.join(unknown)}")
            if self.sql.connection is not None and self.sql.connection not in self.connections:
                if len(self.connections) >= 20:
                    raise ValueError("connections: at most 20")
                self.connections = [*self.connections, self.sql.connection]  # its runs declare it
        return self

    def canonical(self) -> str:
        """The canonical YAML of this definition: what is hashed, stored and diffed."""
        return canonical_yaml(self.model_dump(mode="json", exclude_none=True))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    @property
    def upstreams(self) -> list[str]:
        return sorted({t.on_success_of for t in self.triggers})


def check_name(v: str) -> str:
    if not isinstance(v, str) or not IDENT.match(v):
        raise ValueError("job names are lower_snake_case (a letter first, at most 63 characters)")
    return v


def canonical_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1000)


def diff(old: str, new: str, old_label: str, new_label: str) -> str:
    """A unified diff between two canonical texts."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_label, tofile=new_label))


# --- parameters -----------------------------------------------------------------------------------

class ParamError(ValueError):
    """Parameter values that do not fit their definitions; ``errors`` is [{field, message}]."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def coerce(p: ParamDef, value: Any) -> Any:
    """``value`` (typed JSON, or a string from the CLI or a form) as the JSON value of type ``p.type``;
    ValueError with a message fit to show next to the field."""
    t = p.type
    if t is ParamType.STRING:
        if isinstance(value, (dict, list)):
            raise ValueError("expected a string")
        return str(value)
    if t is ParamType.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if t is ParamType.INT:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("expected an integer")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if t is ParamType.DECIMAL:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("expected a decimal number")
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("expected a decimal number") from None
        if not d.is_finite():
            raise ValueError("expected a finite decimal number")
        return str(d)
    if t is ParamType.DATE:
        if isinstance(value, datetime):
            raise ValueError("expected a date (YYYY-MM-DD)")
        try:
            return (value if isinstance(value, date) else date.fromisoformat(str(value).strip())).isoformat()
        except ValueError:
            raise ValueError("expected a date (YYYY-MM-DD)") from None
    if t is ParamType.DATETIME:
        try:
            return (value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())).isoformat()
        except ValueError:
            raise ValueError("expected a date and time (ISO 8601)") from None
    if t is ParamType.ENUM:
        if str(value) not in (p.values or []):
            raise ValueError(f"expected one of {', '.join(p.values or [])}")
        return str(value)
    raise ValueError(f"unknown type {t}")  # pragma: no cover


def resolve_params(defs: dict[str, ParamDef], overrides: dict[str, Any] | None,
                   builtins: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then overrides, each checked against its type; every error at once (ParamError)."""
    overrides = dict(overrides or {})
    errors: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    for name in sorted(overrides):
        if name not in defs:
            known = ", ".join(sorted(defs)) or "none"
            errors.append({"field": f"params.{name}", "message": f"unknown parameter (this job has: {known})"})
    for name, p in defs.items():
        if name in overrides and overrides[name] is not None:
            try:
                out[name] = coerce(p, overrides[name])
            except ValueError as exc:
                errors.append({"field": f"params.{name}", "message": f"{exc}, got {overrides[name]!r}"[:300]})
        elif p.default is not None:
            out[name] = p.default
        else:
            errors.append({"field": f"params.{name}", "message": "required (it has no default)"})
    if errors:
        raise ParamError(errors)
    return {**{k: v for k, v in (builtins or {}).items() if v is not None}, **out}


_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def render_sql(text: str, values: dict[str, Any], defs: dict[str, ParamDef]) -> str:
    """Replace ``{{ name }}`` with the SQL literal of a resolved value (strings quoted and escaped;
    decimals, dates and datetimes typed)."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise ParamError([{"field": "sql.query", "message": f"{{{{ {name} }}}} is not a parameter of this job"}])
        v = values[name]
        t = defs[name].type if name in defs else None
        if t is ParamType.DECIMAL:
            return f"CAST({sql_literal(v)} AS DECIMAL(38, 10))"
        if t is ParamType.DATE:
            return f"CAST({sql_literal(v)} AS DATE)"
        if t is ParamType.DATETIME:
            return f"CAST({sql_literal(v)} AS TIMESTAMP)"
        if name == "logical_date":
            return f"CAST({sql_literal(v)} AS TIMESTAMPTZ)"
        return sql_literal(v)

    return _PLACEHOLDER.sub(one, text)


def placeholders(text: str) -> list[str]:
    return sorted(set(_PLACEHOLDER.findall(text)))


def parse_definition(data: Any) -> JobDefinition:
    """A definition from a mapping (YAML or JSON); pydantic's ValidationError on bad input."""
    return JobDefinition.model_validate(data)


# --- environments and promotion -------------------------------------------------------------------

# a job version runs in dev freely; it reaches stage from dev and prod from stage by promotion only
LOWER_ENVIRONMENT: dict[str, str] = {"stage": "dev", "prod": "stage"}
PROMOTED_ENVIRONMENTS = tuple(LOWER_ENVIRONMENT)
APPROVER_ROLES = ("admin", "engineer")  # strongest first


class PromotionStatus(StrEnum):
    PENDING = "pending"  # its gates passed; it waits for an approver
    PROMOTED = "promoted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"  # a newer request to the same environment replaced it


PROMOTION_TRANSITIONS: dict[PromotionStatus, frozenset[PromotionStatus]] = {
    PromotionStatus.PENDING: frozenset({PromotionStatus.PROMOTED, PromotionStatus.REJECTED,
                                        PromotionStatus.SUPERSEDED}),
    PromotionStatus.PROMOTED: frozenset(),
    PromotionStatus.REJECTED: frozenset(),
    PromotionStatus.SUPERSEDED: frozenset(),
}


def promotion_transition(current: str, target: PromotionStatus) -> PromotionStatus:
    src = PromotionStatus(current)
    if target not in PROMOTION_TRANSITIONS[src]:
        raise IllegalTransition(f"promotion cannot go from {src} to {target}")
    return target


class Gates(Model):
    """What a workspace asks of a version before it reaches one environment."""

    min_runs: int = Field(default=1, ge=0, le=100)  # the last N finished runs in the lower environment succeeded
    require_dq: bool = False  # … and each has data-quality results (a validate phase) with no failed check
    require_approval: bool = False  # an approver must approve the promotion
    approver_role: Literal["admin", "engineer"] = "admin"  # the weakest role that may approve
    approver_not_author: bool = True  # the version's author and the requester may not approve


DEFAULT_GATES: dict[str, Gates] = {
    "stage": Gates(min_runs=1),
    "prod": Gates(min_runs=3, require_dq=True, require_approval=True),
}


def check_target(environment: str) -> str:
    if environment not in LOWER_ENVIRONMENT:
        raise ValueError(f"promotion goes to {' or '.join(PROMOTED_ENVIRONMENTS)}, not {environment!r} "
                         "(dev runs any version)")
    return environment


def evaluate_gates(gates: Gates, version: int, environment: str, runs: list[dict[str, Any]],
                   in_lower: bool) -> list[dict[str, Any]]:
    """Each gate with ``ok`` and a reason fit to show a person. ``runs`` are the newest finished runs
    of ``version`` in the lower environment (newest first, at most ``gates.min_runs``), each
    ``{run_id, status, dq}`` with ``dq`` the validate phase's summary or None; ``in_lower``: the
    version was ever promoted to the lower environment (always true for stage, whose lower is dev)."""
    lower = LOWER_ENVIRONMENT[environment]
    out: list[dict[str, Any]] = []
    if lower != "dev":
        out.append({"gate": "promoted_to_lower", "ok": in_lower,
                    "reason": f"v{version} is promoted to {lower}" if in_lower
                    else f"v{version} was never promoted to {lower}; promote it there first"})
    n = gates.min_runs
    if n:
        bad = [r for r in runs if r["status"] != "succeeded"]
        if bad:
            reason = (f"run {bad[0]['run_id']} of v{version} in {lower} {bad[0]['status']}: "
                      f"the last {n} runs in {lower} must have succeeded")
        elif len(runs) < n:
            reason = f"v{version} has {len(runs)} finished run{'s' if len(runs) != 1 else ''} in {lower}; {n} needed"
        else:
            reason = f"the last {n} runs of v{version} in {lower} succeeded"
        out.append({"gate": "runs", "ok": not bad and len(runs) >= n, "reason": reason,
                    "runs": [r["run_id"] for r in runs]})
    if gates.require_dq:
        considered = runs if n else []
        missing = [r for r in considered if not r.get("dq")]
        failed = [r for r in considered
                  if r.get("dq") and int(r["dq"].get("checks", 0)) > int(r["dq"].get("passed", 0))]
        if not considered:
            ok, reason = False, f"no run of v{version} in {lower} to take data-quality results from (min_runs is 0)"
        elif missing:
            ok, reason = False, (f"run {missing[0]['run_id']} has no data-quality results "
                                 "(the job has no validate phase)")
        elif failed:
            dq = failed[0]["dq"]
            ok, reason = False, (f"run {failed[0]['run_id']}: {int(dq['checks']) - int(dq['passed'])} of "
                                 f"{dq['checks']} data-quality checks failed")
        else:
            ok, reason = True, f"data-quality checks passed in the last {len(considered)} runs"
        out.append({"gate": "dq", "ok": ok, "reason": reason})
    return out


def approval_refusal(gates: Gates, approver: str, approver_role: str, author: str, requester: str) -> str | None:
    """Why ``approver`` (acting with ``approver_role`` in the workspace) may not approve, or None."""
    if approver_role not in APPROVER_ROLES or \
            APPROVER_ROLES.index(approver_role) > APPROVER_ROLES.index(gates.approver_role):
        return f"approving needs the {gates.approver_role} role in this workspace; {approver} is {approver_role}"
    if gates.approver_not_author and approver == author:
        return f"{approver} wrote this version; this workspace needs another person to approve it"
    if gates.approver_not_author and approver == requester:
        return f"{approver} requested this promotion; this workspace needs another person to approve it"
    return None
