"""A job version becomes runs: run now (with other parameters), rerun, and the run requests the
scheduler and backfills create. Every run records the job id, its version and the resolved parameters
(input manifest ``job`` and labels) and is linked to the job in ``job_runs``."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lakehouse.domain.jobs import JobDefinition, ParamError, RunTrigger, render_sql, resolve_params
from lakehouse.domain.pipelines import PipelineSpec
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS, PhaseSpec, RunRequest
from lakehouse.services import audit, caps, code_policy, promotions, runs, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, NotFound
from lakehouse.store import jobs as store
from lakehouse.store import queue


def run_ids(n: int, now_ms: int | None = None) -> list[str]:
    """``n`` new run ids that ascend in the order given: UUIDv7 (RFC 9562: a millisecond timestamp,
    then 74 bits counted up from a random start). A batch's runs then land together at the end of every
    index keyed by run id (runs, phases, events, job links) instead of at ``n`` random places — a third
    of the database's work for a 10,000-run backfill (docs/benchmarks.md)."""
    ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) & 0xFFFF_FFFF_FFFF
    start = int.from_bytes(os.urandom(10), "big") >> 7  # 73 random bits: room to count up to n
    out = []
    for i in range(n):
        c = start + i
        h = f"{ms << 80 | 0x7 << 76 | (c >> 62) << 64 | 0b10 << 62 | (c & 0x3FFF_FFFF_FFFF_FFFF):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def param_error(exc: ParamError) -> InvalidInput:
    return InvalidInput(str(exc.errors[0]["field"]) + ": " + exc.errors[0]["message"], code="invalid_params",
                        details=exc.errors)


def build_request(ctx: Context, *, workspace: str, workspace_id: int, job_id: int, version: dict[str, Any] | Any,
                  d: JobDefinition, params: dict[str, Any], environment: str, trigger: RunTrigger,
                  logical_date: datetime | None = None, idempotency_key: str | None = None,
                  extra_labels: dict[str, str] | None = None, pipeline_cache: dict[str, Any] | None = None,
                  validate: bool = True) -> RunRequest | store.RunPlan:
    """The run request of one job version with resolved ``params`` (built-ins included).
    ``validate=False`` skips the model checks and the code policy and returns a plain
    :class:`~lakehouse.store.jobs.RunPlan`: for the runs of a batch after the first one was built with
    them (same version, only the parameter values differ)."""
    if environment not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    number = int(version["version"])
    git_sha = version["git_sha"] or f"sha256:{version['content_hash'][:40]}"
    common: dict[str, Any] = {"max_attempts": d.max_attempts, **({"timeout_s": d.timeout_s} if d.timeout_s else {})}
    job_doc = {"id": job_id, "name": d.name, "version": number, "content_hash": version["content_hash"],
               "trigger": trigger.value, "logical_date": logical_date.isoformat() if logical_date else None,
               "params": params, "connections": d.connections}
    labels = {"kind": "job", "job": d.name, "job_id": str(job_id), "job_version": str(number),
              "trigger": trigger.value, **({"logical_date": logical_date.isoformat()} if logical_date else {}),
              **{f"param.{k}": str(v) for k, v in params.items()}, **(extra_labels or {})}
    slug: str = d.name
    phases: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {}
    try:
        if d.pipeline is not None:
            slug, phases, manifest = _pipeline(ctx, d, params, environment, workspace_id, pipeline_cache)
        elif d.sql is not None:
            phases, manifest = _sql(d, params, number, common)
        elif d.python is not None:
            phases = [{"name": "python", "type": "python",
                       "params": {"callable": d.python.callable, "args": {**d.python.params, **params}}, **common}]
        else:
            slug, phases, manifest = _engine(ctx, d, params, environment, workspace_id, common, pipeline_cache)
    except ParamError as exc:
        raise param_error(exc) from None
    # the job's connections are declared by the run: the lease holder may ask for them (lease_secrets)
    declared = {"connections": list(d.connections)} if d.connections else {}
    fields: dict[str, Any] = {"spec_slug": slug, "git_sha": git_sha,
                              "input_manifest": {**manifest, **declared, "job": job_doc, "environment": environment},
              "environment": environment, "workspace": workspace, "idempotency_key": idempotency_key,
              "labels": labels}
    if not validate:
        return store.RunPlan(phases=[store.PhasePlan(**p) for p in phases], **fields)
    req = RunRequest(phases=[PhaseSpec(**p) for p in phases], **fields)
    code_policy.check_run(ctx.settings, req)
    return req


def _pipeline(ctx: Context, d: JobDefinition, params: dict[str, Any], environment: str, ws_id: int,
              cache: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    from lakehouse.services import pipelines

    assert d.pipeline is not None
    if d.pipeline.name is not None:
        key = f"pipeline:{d.pipeline.name}"
        loaded = cache.get(key) if cache is not None else None
        if loaded is None:
            loaded = pipelines.find(d.pipeline.name, ctx.settings.pipelines_dir)
            if cache is not None:
                cache[key] = loaded
        marks = _marks(ctx, ws_id, environment, loaded.spec.name, cache)
        req = pipelines.run_request(loaded, environment, params, marks)
        return req.spec_slug, [p.model_dump(exclude_none=True) for p in req.phases], dict(req.input_manifest)
    spec = d.pipeline.spec
    assert spec is not None
    marks = _marks(ctx, ws_id, environment, spec.name, cache)
    merged = {**spec.params, **params}
    manifest = {"pipeline": spec.name, "spec_version": spec.version, "spec_path": None,
                "spec": spec.model_dump(mode="json"), "sql": dict(d.pipeline.sql), "params": merged,
                "watermarks": marks}
    return spec.name, spec.phases(), manifest


def _marks(ctx: Context, ws_id: int, environment: str, pipeline: str, cache: dict[str, Any] | None) -> Any:
    """The pipeline's current watermarks (read once per batch of runs when a cache is given)."""
    from lakehouse.services import watermarks

    key = f"marks:{ws_id}:{environment}:{pipeline}"
    if cache is not None and key in cache:
        return cache[key]
    marks = watermarks.current(ctx, ws_id, environment, pipeline)
    if cache is not None:
        cache[key] = marks
    return marks


def _engine(ctx: Context, d: JobDefinition, params: dict[str, Any], environment: str, ws_id: int,
            common: dict[str, Any], cache: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """spark and dbt jobs (docs/engines.md): the engine's phase, then ``publish``. A spark section that
    names a ``pipeline`` runs that pipeline with its transform phase on Spark; a dbt section's
    ``project`` (a folder under the pipelines folder) is carried in the run."""
    from lakehouse.domain.jobs import PipelineJob

    kind = d.type.value
    body = dict(getattr(d, kind) or {})
    if kind == "spark" and body.get("pipeline"):
        name = str(body.pop("pipeline"))
        slug, steps, carried = _pipeline(ctx, d.model_copy(update={"pipeline": PipelineJob(name=name)}), params,
                                         environment, ws_id, cache)
        steps = [{**p, "type": "spark", "params": {**body, "args": params}} if p["name"] == "transform" else p
                 for p in steps]
        return slug, steps, carried
    manifest: dict[str, Any] = {"params": params}
    if kind == "dbt":
        from lakehouse.engines.dbt_project import ProjectError, pack

        folder = (ctx.settings.pipelines_dir / str(body.pop("project", ""))).resolve()
        if not folder.is_relative_to(ctx.settings.pipelines_dir):
            raise InvalidInput("dbt.project is a folder under the pipelines folder", code="invalid_job")
        try:
            manifest["dbt_project"] = pack(folder)
        except (ProjectError, OSError) as exc:
            raise InvalidInput(f"dbt.project: {exc}", code="invalid_job") from None
    if kind == "spark" and body.get("target"):
        manifest["write"] = {body["target"]: {"mode": body.get("mode", "overwrite"), "keys": body.get("keys") or []}}
    phases = [{"name": kind, "type": kind, "params": {**body, "args": params}, **common},
              {"name": "publish", "type": "publish", "params": {}, **common}]
    return d.name, phases, manifest


def _sql(d: JobDefinition, params: dict[str, Any], version: int, common: dict[str, Any]
         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert d.sql is not None
    text = render_sql(d.sql.query, params, d.params)
    if d.sql.connection is not None:
        return _sql_on_connection(d, text, params, common)
    phase_type = "sql" if d.sql.engine == "duckdb" else "sql_trino"
    if d.sql.target is None:
        return [{"name": "sql", "type": phase_type, "params": {"sql": text}, **common}], {"params": params}
    if d.sql.engine != "duckdb":
        raise InvalidInput("sql jobs with a target table run on duckdb for now", code="invalid_job",
                           details=[{"field": "sql.engine", "message": "use duckdb with a target table"}])
    spec = PipelineSpec.model_validate({
        "name": d.name, "version": version, "description": d.description,
        "transforms": [{"name": "query", "sql": "query.sql", "output": d.sql.target, "keys": d.sql.keys}],
        "max_attempts": d.max_attempts, **({"timeout_s": d.timeout_s} if d.timeout_s else {}),
    })
    phases = [p for p in spec.phases() if p["name"] in ("transform", "publish")]
    manifest = {"pipeline": d.name, "spec_version": version, "spec": spec.model_dump(mode="json"),
                "sql": {"query": text}, "params": params,
                "write": {d.sql.target: {"mode": d.sql.mode, "keys": d.sql.keys}}}
    return phases, manifest


def _sql_on_connection(d: JobDefinition, text: str, params: dict[str, Any], common: dict[str, Any]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A sql job whose statement runs on a PostgreSQL connection: one ``sql`` phase that asks for the
    connection for its lease and runs the statement there read-only (handlers/sql_source.py); with a
    target, its rows are staged for ``publish`` in the job's write mode."""
    assert d.sql is not None and d.sql.connection is not None
    step: dict[str, Any] = {"sql": text, "connection": d.sql.connection}
    if d.sql.target is None:
        return [{"name": "sql", "type": "sql", "params": step, **common}], {"params": params}
    phases = [{"name": "extract", "type": "sql", "params": {**step, "target": d.sql.target}, **common},
              {"name": "publish", "type": "publish", "params": {}, **common}]
    return phases, {"params": params, "write": {d.sql.target: {"mode": d.sql.mode, "keys": d.sql.keys}}}


def _job_and_version(conn: Any, ws_id: int, name: str, number: int | None) -> tuple[Any, Any]:
    row = store.get_job(conn, ws_id, name)
    if row is None or row["status"] != "active":
        raise NotFound(f"job {name!r} not found", code="job_not_found")
    v = store.get_version(conn, row["id"], number or row["current_version"])
    if v is None:
        raise NotFound(f"job {name!r} has no version {number}", code="version_not_found")
    return row, v


def create(ctx: Context, principal: Principal, new: Sequence[store.NewRun], action: str, ws_id: int,
           details: dict[str, Any]) -> list[str]:
    """Insert runs of jobs (one transaction, audited); returns the ids inserted (a repeated
    idempotency key inserts nothing)."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        ids = caps.insert_job_runs(conn, new, now, reject=True)  # over a queue cap: 429, or held
        if ids:
            audit.record(conn, now, principal, action, "job", str(details.get("job")), ws_id,
                         {**details, "runs": len(ids), **({"run_id": ids[0]} if len(ids) == 1 else {})})
    if ids:
        ctx.waker.ready()
    return ids


def run_job(ctx: Context, principal: Principal, workspace: str, name: str, params: dict[str, Any] | None = None, *,
            environment: str | None = None, version: int | None = None, idempotency_key: str | None = None
            ) -> tuple[dict[str, Any], bool]:
    """Run a job now (its current version, or ``version``) with parameter overrides."""
    principal.require(Action.JOB_RUN)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=True)
    principal.require_in(Action.JOB_RUN, ws_id)
    with ctx.db.read() as conn:
        row, current = _job_and_version(conn, ws_id, name, None)
        env = environment or str(current["definition"].get("environment") or "dev")
        row, v = _job_and_version(conn, ws_id, name, promotions.version_for(conn, row, env, version))
    d = JobDefinition.model_validate(v["definition"])
    try:
        resolved = resolve_params(d.params, params)
    except ParamError as exc:
        raise param_error(exc) from None
    return _start(ctx, principal, workspace, ws_id, row["id"], v, d, resolved, env, RunTrigger.MANUAL, None,
                  idempotency_key)


def _start(ctx: Context, principal: Principal, workspace: str, ws_id: int, job_id: int, v: Any, d: JobDefinition,
           params: dict[str, Any], environment: str, trigger: RunTrigger, logical_date: datetime | None,
           idempotency_key: str | None, extra_labels: dict[str, str] | None = None) -> tuple[dict[str, Any], bool]:
    req = build_request(ctx, workspace=workspace, workspace_id=ws_id, job_id=job_id, version=v, d=d, params=params,
                        environment=environment, trigger=trigger, logical_date=logical_date,
                        idempotency_key=idempotency_key, extra_labels=extra_labels)
    new = store.NewRun(run_id=str(uuid.uuid4()), workspace_id=ws_id, request=req, job_id=job_id,
                       version=int(v["version"]), trigger=trigger.value, created_by=principal.name,
                       logical_date=logical_date)
    ids = create(ctx, principal, [new], f"job.{trigger.value}", ws_id,
                 {"job": d.name, "version": int(v["version"]), "environment": environment})
    if ids:
        return runs.get_run(ctx, ids[0], principal), True
    with ctx.db.read() as conn:  # the idempotency key names an earlier run
        existing = store.run_by_idempotency(conn, ws_id, idempotency_key) if idempotency_key else None
    if existing is None:
        raise InvalidInput("the run was not created", code="run_not_created")
    return runs.get_run(ctx, existing, principal), False


def rerun(ctx: Context, principal: Principal, run_id: str, params: dict[str, Any] | None = None,
          environment: str | None = None) -> tuple[dict[str, Any], bool]:
    """Run a job run again: the same version and parameters (and logical date); ``params`` overrides
    some of them ("run again with other parameters")."""
    principal.require(Action.JOB_RUN)
    with ctx.db.read() as conn:
        link = store.job_run_link(conn, run_id)
        run = queue.get_run(conn, run_id)
        if link is None or run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {run_id} is not a run of a job", code="run_not_found")
        job = store.get_job_by_id(conn, link["job_id"])
        v = store.get_version(conn, link["job_id"], link["version"])
        ws_slug = queue.workspace_slug(conn, run["workspace_id"])
        principal.require_in(Action.JOB_RUN, run["workspace_id"])
        assert job is not None and v is not None
        env = environment or run["environment"]
        promotions.version_for(conn, job, env, int(link["version"]))  # stage/prod rerun only their version
    d = JobDefinition.model_validate(v["definition"])
    before = dict(((run["input_manifest"] or {}).get("job") or {}).get("params") or {})
    builtins = {k: before.pop(k) for k in ("logical_date", "upstream_run_id", "partition") if k in before}
    try:
        resolved = resolve_params(d.params, {**before, **(params or {})}, builtins)
    except ParamError as exc:
        raise param_error(exc) from None
    return _start(ctx, principal, ws_slug, run["workspace_id"], job["id"], v, d, resolved,
                  env, RunTrigger.RERUN, link["logical_date"], None,
                  {"rerun_of": run_id})


def job_runs(ctx: Context, principal: Principal, workspace: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
    from lakehouse.services.jobs import render_job_run

    principal.require(Action.READ)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(Action.READ, ws_id)
    with ctx.db.read() as conn:
        row, _ = _job_and_version(conn, ws_id, name, None)
        return [render_job_run(r) for r in store.runs_of_job(conn, row["id"], limit)]
