"""Reruns that say what they replay, and run ids as people type them.

A run freezes its spec, SQL, parameters and watermarks in its input manifest. ``rerun(…, mode="as_ran")``
replays exactly that (same git sha, same spec version); ``mode="current"`` starts the pipeline again from
the spec as it is now in the pipelines folder, with the run's environment and parameters. Both may start
from a phase, handing the earlier phases' outputs on as ``previous_outputs``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import runs
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound, ServiceError
from lakehouse.store import run_reads

Mode = Literal["as_ran", "current"]
PREFIX_RE = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")
FULL_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def resolve_run_id(ctx: Context, principal: Principal, prefix: str) -> str:
    """The one visible run whose id starts with ``prefix`` (at least 4 characters, as the UI and CLI
    show 8); a full id is returned as it is. Ambiguity is a 409 that lists the candidates."""
    value = prefix.strip().lower()
    if FULL_RE.match(value):
        return value
    if not PREFIX_RE.match(value):
        raise InvalidInput(f"{prefix!r} is not a run id or the start of one (at least 4 hex characters)",
                           code="invalid_run_id")
    with ctx.db.read() as conn:
        found = run_reads.ids_by_prefix(conn, value, principal.workspace_ids, limit=6)
    if not found:
        raise NotFound(f"run {prefix} not found", code="run_not_found")
    if len(found) > 1:
        listed = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise Conflict(f"{prefix} matches {len(found) if len(found) <= 5 else 'more than 5'} runs ({listed}); "
                       "type more of the id", code="ambiguous_run_id", details={"candidates": found[:5]})
    return found[0]


def current_spec(ctx: Context, run: dict[str, Any]) -> dict[str, Any] | None:
    """The pipeline spec of ``run`` as it is now: ``{version, changed, error}``; None when the run is
    not a pipeline run or its spec is gone from the pipelines folder."""
    from lakehouse.services import pipelines

    manifest = run.get("input_manifest") or {}
    if "spec" not in manifest or not ctx.settings.pipelines_dir.is_dir():
        return None
    try:
        loaded = pipelines.find(run["spec_slug"], ctx.settings.pipelines_dir)
    except NotFound:
        return None
    except ServiceError as exc:
        return {"version": None, "changed": True, "error": exc.message}
    return {"version": loaded.spec.version, "changed": loaded.content_hash != manifest.get("spec_sha256"),
            "error": None}


def rerun(ctx: Context, principal: Principal, run_id: str, *, from_phase: str | None = None,
          mode: Mode = "as_ran") -> dict[str, Any]:
    """Start a new run from ``run_id``; returns the new run (labels ``rerun_of``, ``rerun_mode``)."""
    principal.require(Action.RUN_CREATE)
    old = runs.get_run(ctx, run_id, principal)
    names = [ph["name"] for ph in old["phases"]]
    if from_phase and from_phase not in names:
        raise NotFound(f"run has no phase {from_phase!r}", code="phase_not_found")
    labels = {**(old["labels"] or {}), "rerun_of": old["run_id"], "rerun_mode": mode}
    labels.pop("from_phase", None)
    if from_phase:
        labels["from_phase"] = from_phase
    if mode == "current":
        req = _current_request(ctx, principal, old, labels)
    elif mode == "as_ran":
        req = RunRequest(
            spec_slug=old["spec_slug"], git_sha=old["git_sha"], environment=old["environment"],
            workspace=old["workspace"], input_manifest=dict(old["input_manifest"] or {}), labels=labels,
            phases=[PhaseSpec(name=ph["name"], type=ph["type"], capability=ph["capability"],
                              params=ph["params"] or {}, timeout_s=ph["timeout_s"], max_attempts=ph["max_attempts"])
                    for ph in old["phases"]])
    else:
        raise InvalidInput(f"rerun mode is as_ran or current, not {mode!r}", code="invalid_mode")
    if from_phase:
        req = _from_phase(req, old, from_phase)
    new, _ = runs.create_run(ctx, req, principal)
    return new


def _current_request(ctx: Context, principal: Principal, old: dict[str, Any], labels: dict[str, str]) -> RunRequest:
    from lakehouse.services import pipelines, watermarks, workspaces

    if "spec" not in (old["input_manifest"] or {}):
        raise Conflict(f"run {old['run_id']} was not started from a pipeline spec; rerun it as it ran",
                       code="not_a_pipeline_run")
    loaded = pipelines.find(old["spec_slug"], ctx.settings.pipelines_dir)
    ws_id = workspaces.resolve_for(ctx, principal, old["workspace"], write=True)
    marks = watermarks.current(ctx, ws_id, old["environment"], old["spec_slug"])
    params = (old["input_manifest"] or {}).get("params") or {}
    req: RunRequest = pipelines.run_request(loaded, old["environment"], params, marks, workspace=old["workspace"])
    return req.model_copy(update={"labels": {**(req.labels or {}), **{k: v for k, v in labels.items()
                                                                        if k != "spec_version"}}})


def _from_phase(req: RunRequest, old: dict[str, Any], from_phase: str) -> RunRequest:
    names = [p.name for p in req.phases]
    if from_phase not in names:
        raise Conflict(f"the current spec has no phase {from_phase!r}; rerun it as it ran", code="phase_not_found")
    i = names.index(from_phase)
    earlier = set(names[:i])
    manifest = dict(req.input_manifest)
    previous = dict((old["input_manifest"] or {}).get("previous_outputs") or {})  # a rerun of a rerun
    previous.update({ph["name"]: ph["output_manifest"] for ph in old["phases"]
                     if ph["name"] in earlier and ph["status"] == "succeeded"})
    manifest["previous_outputs"] = {k: v for k, v in previous.items() if k in earlier}
    return req.model_copy(update={"phases": req.phases[i:], "input_manifest": manifest})
