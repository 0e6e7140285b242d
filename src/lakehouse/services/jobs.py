"""Jobs: create, edit (a new immutable version each time), list, show, versions, diff, pause, archive,
and the GitOps plan/apply of a folder of job files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakehouse.domain import schedules
from lakehouse.domain.jobs import JobDefinition, JobStatus, JobType, diff, job_transition
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.states import shown_phase_status
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import jobs as store

_NAMED_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+) ")


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """A pydantic error as InvalidInput: the first error in the message, every error (field, message)
    in the details, so that a form can show each next to its field."""
    details = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = str(e["msg"]).removeprefix("Value error, ")
        named = _NAMED_FIELD.match(message) if not where else None
        if named:  # a check across fields that names the one at fault ("sql.query uses …")
            where = named.group(1)
        details.append({"field": prefix + where if where else prefix.rstrip(".") or "definition",
                        "message": message})
    first = details[0]
    return InvalidInput(f"{first['field']}: {first['message']}", code="invalid_job", details=details)


def parse(definition: dict[str, Any] | str | JobDefinition) -> JobDefinition:
    """A definition from a mapping or YAML text; InvalidInput with every field error."""
    if isinstance(definition, JobDefinition):
        return definition
    if isinstance(definition, str):
        try:
            definition = yaml.safe_load(definition)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", code="invalid_job",
                               details=[{"field": "definition", "message": "invalid YAML"}]) from None
    if not isinstance(definition, dict):
        raise InvalidInput("a job definition is a mapping", code="invalid_job",
                           details=[{"field": "definition", "message": "a job definition is a mapping"}])
    try:
        return JobDefinition.model_validate(definition)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _check_runnable(ctx: Context, principal: Principal, ws_id: int, d: JobDefinition,
                    connections: dict[str, set[str]]) -> None:
    """What the model alone cannot know: the Python allow-list, the workspace's connections (which the
    author must be allowed to use; a ``sql.connection`` must be a PostgreSQL one), and that scheduled
    or triggered jobs can run without anyone giving parameters."""
    from lakehouse.handlers.python import is_allowed

    errors = []
    targets = []
    if d.python is not None:
        targets.append(("python.callable", d.python.callable))
    if d.pipeline is not None and d.pipeline.spec is not None:
        targets += [(f"pipeline.spec.transforms.{i}.python", t.python)
                    for i, t in enumerate(d.pipeline.spec.transforms) if t.python]
    for where, target in targets:
        if not is_allowed(target, ctx.settings.python_modules):
            errors.append({"field": where, "message": f"{target!r} is not a Python function an admin registered "
                                                     "(LAKEHOUSE_PYTHON_MODULES or the lakehouse.python entry points)"})
    if d.connections and not principal.can_in(Action.CONNECTION_READ, ws_id):
        errors.append({"field": "connections", "message": "you may not use this workspace's connections"})
    for i, name in enumerate(d.connections):
        if name not in connections:
            errors.append({"field": f"connections.{i}", "message": f"no connection {name!r} in this workspace"})
    source = d.sql.connection if d.sql is not None else None
    if source is not None and source in connections and "postgres" not in connections[source]:
        errors.append({"field": "sql.connection", "message": f"connection {source!r} is not a PostgreSQL connection"})
    if d.schedule is not None or d.triggers:
        required = sorted(n for n, p in d.params.items() if p.required)
        if required:
            errors.append({"field": "params", "message": "a scheduled or triggered job needs a default for every "
                                                         f"parameter; missing: {', '.join(required)}"})
    if errors:
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['message']}", code="invalid_job", details=errors)


def _check_triggers(conn: Any, ws_id: int, d: JobDefinition, batch: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Every upstream exists (or is being applied in the same batch) and no cycle appears."""
    if not d.triggers:  # a cycle through this job needs an upstream of it
        return
    edges = [(j, u) for j, u in store.trigger_edges(conn, ws_id) if j != d.name]
    edges += [(d.name, u) for u in d.upstreams]
    known = {r["name"] for r in store.list_jobs(conn, [ws_id])} | set(batch) | {d.name}
    for i, t in enumerate(d.triggers):
        if t.on_success_of not in known:
            raise InvalidInput(f"triggers.{i}.on_success_of: no job {t.on_success_of!r} in this workspace",
                               code="invalid_job", details=[{"field": f"triggers.{i}.on_success_of",
                                                             "message": f"no job {t.on_success_of!r}"}])
    cycle = find_cycle(edges, d.name)
    if cycle:
        path = " → ".join(cycle)
        raise InvalidInput(f"triggers: this makes a cycle ({path})", code="trigger_cycle",
                           details=[{"field": "triggers", "message": f"cycle: {path}"}])


def find_cycle(edges: list[tuple[str, str]], start: str) -> list[str] | None:
    """A path start → … → start following "runs after" edges (job, upstream), if there is one."""
    ups: dict[str, list[str]] = {}
    for job, up in edges:
        ups.setdefault(job, []).append(up)
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for up in ups.get(node, []):
            if up == start:
                return [*path, up]
            if up not in seen:
                seen.add(up)
                stack.append((up, [*path, up]))
    return None


@dataclass(frozen=True)
class Saved:
    job: dict[str, Any]
    outcome: str  # created | updated | unchanged


def save(ctx: Context, principal: Principal, workspace: str, definition: dict[str, Any] | str | JobDefinition, *,
         mode: str = "upsert", git_sha: str | None = None, batch: set[str] | None = None) -> Saved:
    """Create a job (``mode='create'``: a name clash is a conflict), add a version to one
    (``'update'``: an unknown job is 404) or either (``'upsert'``, what apply does). A definition
    equal to the current version changes nothing."""
    principal.require(Action.JOB_MANAGE)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=True)
    principal.require_in(Action.JOB_MANAGE, ws_id)
    d = parse(definition)
    with ctx.db.read() as conn:
        _check_runnable(ctx, principal, ws_id, d, store.connection_types(conn, ws_id))
    canonical, content_hash = d.canonical(), d.content_hash()
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = store.get_job(conn, ws_id, d.name, lock=True)
        active = row is not None and row["status"] == JobStatus.ACTIVE.value
        if mode == "create" and active:
            raise Conflict(f"a job named {d.name!r} already exists in {workspace}", code="job_exists",
                           details=[{"field": "name", "message": "already exists"}])
        if mode == "update" and not active:
            raise NotFound(f"job {d.name!r} not found", code="job_not_found")
        _check_triggers(conn, ws_id, d, batch or set())
        current = store.get_version(conn, row["id"], row["current_version"]) if row is not None else None
        if active and current is not None and current["content_hash"] == content_hash:
            return Saved(_render_row(conn, row, current, workspace, now), "unchanged")
        if row is None:
            job_id, version = store.insert_job(conn, workspace_id=ws_id, name=d.name, type_=d.type.value,
                                               created_by=principal.name, now=now), 1
        else:
            job_id, version = row["id"], row["current_version"] + 1
        store.insert_version(conn, job_id=job_id, version=version, content_hash=content_hash,
                             definition=d.model_dump(mode="json", exclude_none=True), canonical=canonical,
                             git_sha=git_sha, created_by=principal.name, now=now)
        old_schedule = (current["definition"] or {}).get("schedule") if current is not None else None
        values: dict[str, Any] = {"current_version": version, "type": d.type.value, "updated_at": now}
        if row is not None and not active:
            values["status"] = job_transition(row["status"], JobStatus.ACTIVE).value
            values["paused"] = False
        new_schedule = d.model_dump(mode="json", exclude_none=True).get("schedule")
        if row is None or not active or old_schedule != new_schedule:
            values |= _schedule_state(d, now)
        store.update_job(conn, job_id, **values)
        store.set_upstreams(conn, job_id, ws_id, d.upstreams)
        audit.record(conn, now, principal, "job.create" if row is None else "job.update", "job", d.name, ws_id,
                     {"version": version, "content_hash": content_hash, "git_sha": git_sha})
        saved = store.get_job_by_id(conn, job_id)
        saved_version = store.get_version(conn, job_id, version)
        assert saved is not None and saved_version is not None
        return Saved(_render_row(conn, saved, saved_version, workspace, now),
                     "created" if row is None or not active else "updated")


def _schedule_state(d: JobDefinition, now: datetime) -> dict[str, Any]:
    """A new or changed schedule starts now: ticks before this moment are not owed (backfills are)."""
    s = d.schedule
    if s is None:
        return {"next_fire_at": None, "last_tick_at": None}
    start = schedules.localize(s.start, s.timezone) if s.start else None
    end = schedules.localize(s.end, s.timezone) if s.end else None
    return {"next_fire_at": schedules.next_after(s.cron, s.timezone, now, start, end), "last_tick_at": now}


def _job_row(conn: Any, principal: Principal, ws_id: int, name: str) -> Any:
    row = store.get_job(conn, ws_id, name)
    if row is None or row["status"] != JobStatus.ACTIVE.value:
        raise NotFound(f"job {name!r} not found", code="job_not_found")
    return row


def _resolve(ctx: Context, principal: Principal, workspace: str, action: Action) -> int:
    principal.require(action)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(action, ws_id)
    return ws_id


def get_job(ctx: Context, principal: Principal, workspace: str, name: str) -> dict[str, Any]:
    ws_id = _resolve(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        row = _job_row(conn, principal, ws_id, name)
        return _render_row(conn, row, store.get_version(conn, row["id"], row["current_version"]), workspace,
                           ctx.clock(), runs=True)


def _render_row(conn: Any, row: Any, version: Any, workspace: str, now: datetime, runs: bool = False
                ) -> dict[str, Any]:
    d = version["definition"]
    out = {
        "id": row["id"], "name": row["name"], "workspace": workspace, "type": row["type"], "status": row["status"],
        "version": row["current_version"], "content_hash": version["content_hash"], "git_sha": version["git_sha"],
        "description": d.get("description", ""), "owner": d.get("owner") or row["created_by"],
        "paused": row["paused"], "created_by": row["created_by"], "created_at": row["created_at"],
        "updated_at": row["updated_at"], "definition": d, "schedule": d.get("schedule"),
        "triggers": [t["on_success_of"] for t in d.get("triggers") or []],
        "next_fire_at": row["next_fire_at"], "next_fires": next_fires(d, row, now),
    }
    if runs:
        out["recent_runs"] = [render_job_run(r) for r in store.runs_of_job(conn, row["id"], 10)]
    return out


def next_fires(d: dict[str, Any], row: Any, now: datetime, n: int = 5) -> list[datetime]:
    s = d.get("schedule")
    if not s or row["paused"] or row["status"] != JobStatus.ACTIVE.value:
        return []
    sched = JobDefinition.model_validate(d).schedule
    assert sched is not None
    start = schedules.localize(sched.start, sched.timezone) if sched.start else None
    end = schedules.localize(sched.end, sched.timezone) if sched.end else None
    after = max(now, start - timedelta(microseconds=1)) if start else now
    return schedules.next_fires(sched.cron, sched.timezone, after, n, end)


def render_job_run(r: Any) -> dict[str, Any]:
    return {"run_id": r["run_id"], "version": r["version"], "trigger": r["trigger"],
            "logical_date": r["logical_date"], "backfill_id": r["backfill_id"], "status": r["status"],
            "environment": r["environment"], "created_at": r["created_at"], "started_at": r["started_at"],
            "finished_at": r["finished_at"], "error": r["error"], "created_by": r["created_by"]}


def list_jobs(ctx: Context, principal: Principal, workspace: str | None = None) -> list[dict[str, Any]]:
    principal.require(Action.READ)
    ids: Any = principal.workspace_ids
    if workspace is not None:
        ids = [_resolve(ctx, principal, workspace, Action.READ)]
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = store.list_jobs(conn, ids)
        last = store.last_runs(conn, [r["id"] for r in rows])
        promoted = {(k[0], k[1]): int(v["version"]) for k, v in store.promoted_versions(conn, [r["id"] for r in rows])
                    .items()}
    out = []
    for r in rows:
        d = r["definition"]
        lr = last.get(r["id"])
        out.append({
            "id": r["id"], "name": r["name"], "workspace": r["workspace"], "type": r["type"],
            "version": r["current_version"], "paused": r["paused"], "owner": d.get("owner") or r["created_by"],
            "description": d.get("description", ""), "schedule": (d.get("schedule") or {}).get("cron"),
            "timezone": (d.get("schedule") or {}).get("timezone"),
            "next_fire_at": next_fires(d, r, now, 1)[0] if d.get("schedule") and next_fires(d, r, now, 1) else None,
            "last_run": {"run_id": lr["run_id"], "status": lr["status"], "created_at": lr["created_at"]}
            if lr else None,
            "environments": {env: promoted[(r["id"], env)] for env in ("stage", "prod") if (r["id"], env) in promoted},
        })
    return out


def grid(ctx: Context, principal: Principal, workspace: str, name: str, limit: int = 25) -> dict[str, Any]:
    """Recent runs by phases (Airflow's grid): the phase names in order (a union over the runs, since
    versions differ), and per run its status and each phase's status (``None``: that run has no such
    phase)."""
    ws_id = _resolve(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        row = _job_row(conn, principal, ws_id, name)
        recent = [render_job_run(r) for r in store.runs_of_job(conn, row["id"], limit)]
        cells = store.phases_of_runs(conn, [r["run_id"] for r in recent])
    names: list[str] = []
    by_run: dict[str, dict[str, str]] = {}
    for c in cells:
        if c["name"] not in names:
            names.append(c["name"])
        status = shown_phase_status(c["status"], c["attempt"])
        by_run.setdefault(c["run_id"], {})[c["name"]] = status
    for r in recent:
        r["cells"] = by_run.get(r["run_id"], {})
    return {"phases": names, "runs": recent}


def versions(ctx: Context, principal: Principal, workspace: str, name: str) -> list[dict[str, Any]]:
    ws_id = _resolve(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        row = _job_row(conn, principal, ws_id, name)
        return [{"version": v["version"], "content_hash": v["content_hash"], "git_sha": v["git_sha"],
                 "created_by": v["created_by"], "created_at": v["created_at"],
                 "current": v["version"] == row["current_version"]} for v in store.list_versions(conn, row["id"])]


def version(ctx: Context, principal: Principal, workspace: str, name: str, number: int) -> dict[str, Any]:
    ws_id = _resolve(ctx, principal, workspace, Action.READ)
    with ctx.db.read() as conn:
        row = _job_row(conn, principal, ws_id, name)
        v = store.get_version(conn, row["id"], number)
    if v is None:
        raise NotFound(f"job {name!r} has no version {number}", code="version_not_found")
    return {"version": v["version"], "content_hash": v["content_hash"], "git_sha": v["git_sha"],
            "created_by": v["created_by"], "created_at": v["created_at"], "definition": v["definition"],
            "canonical": v["canonical"]}


def version_diff(ctx: Context, principal: Principal, workspace: str, name: str, old: int, new: int) -> dict[str, Any]:
    a = version(ctx, principal, workspace, name, old)
    b = version(ctx, principal, workspace, name, new)
    return {"from": old, "to": new, "diff": diff(a["canonical"], b["canonical"], f"{name}@v{old}", f"{name}@v{new}")}


def set_paused(ctx: Context, principal: Principal, workspace: str, name: str, paused: bool) -> dict[str, Any]:
    """Pause: ticks while paused are skipped, not owed. Resume: the schedule starts again from now."""
    ws_id = _resolve(ctx, principal, workspace, Action.JOB_MANAGE)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _job_row(conn, principal, ws_id, name)
        v = store.get_version(conn, row["id"], row["current_version"])
        assert v is not None
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused and row["paused"]:
            values |= _schedule_state(JobDefinition.model_validate(v["definition"]), now)
        store.update_job(conn, row["id"], **values)
        audit.record(conn, now, principal, "job.pause" if paused else "job.resume", "job", name, ws_id, {})
    return get_job(ctx, principal, workspace, name)


def archive(ctx: Context, principal: Principal, workspace: str, name: str) -> dict[str, Any]:
    """Archive a job: it leaves the lists, its schedule and triggers stop; versions and runs stay.
    Creating a job of that name again makes a new version of it."""
    ws_id = _resolve(ctx, principal, workspace, Action.JOB_MANAGE)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _job_row(conn, principal, ws_id, name)
        store.update_job(conn, row["id"], status=job_transition(row["status"], JobStatus.ARCHIVED),
                         next_fire_at=None, updated_at=now)
        audit.record(conn, now, principal, "job.archive", "job", name, ws_id, {"version": row["current_version"]})
    return {"name": name, "workspace": workspace, "status": JobStatus.ARCHIVED.value}


# --- GitOps: plan and apply a folder of job files -------------------------------------------------

@dataclass
class PlanItem:
    name: str
    action: str  # create | update | unchanged | archive | invalid
    path: str | None = None
    from_version: int | None = None
    diff: str = ""
    error: str | None = None
    definition: JobDefinition | None = field(default=None, repr=False)
    git_sha: str | None = None


def load_files(paths: list[Path]) -> list[tuple[Path, JobDefinition | None, str | None, str | None]]:
    """(path, definition, git_sha, error) of every job file; ``query_file`` in an sql section is read
    relative to the file and inlined, so the version holds the SQL text itself."""
    from lakehouse.services.pipelines import discover, git_sha_for

    out: list[tuple[Path, JobDefinition | None, str | None, str | None]] = []
    for path in discover(paths):
        try:
            text = path.read_text()
            doc = yaml.safe_load(text)
            if isinstance(doc, dict) and isinstance(doc.get("sql"), dict) and "query_file" in doc["sql"]:
                sql = dict(doc["sql"])
                sql["query"] = (path.parent / str(sql.pop("query_file"))).read_text()
                doc = {**doc, "sql": sql}
            d = parse(doc)
        except (OSError, yaml.YAMLError) as exc:
            out.append((path, None, None, f"{path}: cannot read: {exc}"))
            continue
        except InvalidInput as exc:
            out.append((path, None, None, f"{path}: {exc.message}"))
            continue
        out.append((path, d, git_sha_for(path, d.content_hash()), None))
    return out


def plan(ctx: Context, principal: Principal, workspace: str, paths: list[Path], *, prune: bool = False
         ) -> list[PlanItem]:
    """What apply would do, job by job, ordered so that a trigger's upstream comes first."""
    ws_id = _resolve(ctx, principal, workspace, Action.READ)
    items: list[PlanItem] = []
    seen: dict[str, Path] = {}
    with ctx.db.read() as conn:
        for path, d, sha, error in load_files(paths):
            if d is None:
                items.append(PlanItem(path.stem, "invalid", str(path), error=error))
                continue
            if d.name in seen:
                items.append(PlanItem(d.name, "invalid", str(path),
                                      error=f"{path}: job {d.name!r} is also defined in {seen[d.name]}"))
                continue
            seen[d.name] = path
            row = store.get_job(conn, ws_id, d.name)
            if row is None or row["status"] != JobStatus.ACTIVE.value:
                items.append(PlanItem(d.name, "create", str(path), diff=diff("", d.canonical(), "/dev/null",
                                                                             d.name), definition=d, git_sha=sha))
                continue
            cur = store.get_version(conn, row["id"], row["current_version"])
            same = cur is not None and cur["content_hash"] == d.content_hash()
            items.append(PlanItem(d.name, "unchanged" if same else "update", str(path), row["current_version"],
                                  "" if same else diff(cur["canonical"] if cur else "", d.canonical(),
                                                       f"{d.name}@v{row['current_version']}", str(path)),
                                  definition=d, git_sha=sha))
        if prune:
            for r in store.list_jobs(conn, [ws_id]):
                if r["name"] not in seen:
                    items.append(PlanItem(r["name"], "archive", None, r["current_version"]))
    return _upstreams_first(items)


def _upstreams_first(items: list[PlanItem]) -> list[PlanItem]:
    by_name = {i.name: i for i in items if i.definition is not None}
    done: set[str] = set()
    out: list[PlanItem] = []

    def visit(item: PlanItem, trail: tuple[str, ...]) -> None:
        if item.name in done or item.name in trail:
            return
        for up in item.definition.upstreams if item.definition else []:
            if up in by_name:
                visit(by_name[up], (*trail, item.name))
        done.add(item.name)
        out.append(item)

    for item in items:
        visit(item, ())
    return out


def apply(ctx: Context, principal: Principal, workspace: str, items: list[PlanItem]) -> list[PlanItem]:
    """Carry out a plan (invalid items refuse the whole apply before anything changes)."""
    principal.require(Action.JOB_MANAGE)
    bad = [i for i in items if i.action == "invalid"]
    if bad:
        raise InvalidInput(bad[0].error or f"{bad[0].name} is invalid", code="invalid_job",
                           details=[i.error for i in bad])
    batch = {i.name for i in items if i.definition is not None}
    for item in items:
        if item.action in ("create", "update") and item.definition is not None:
            save(ctx, principal, workspace, item.definition, mode="upsert", git_sha=item.git_sha, batch=batch)
        elif item.action == "archive":
            archive(ctx, principal, workspace, item.name)
    return items


def definition_of(ctx: Context, principal: Principal, workspace: str, name: str) -> JobDefinition:
    v = version(ctx, principal, workspace, name, get_job(ctx, principal, workspace, name)["version"])
    return JobDefinition.model_validate(v["definition"])


__all__ = ["JobType", "Saved", "apply", "archive", "get_job", "grid", "list_jobs", "plan", "save", "set_paused",
           "version", "version_diff", "versions"]
