"""Load and validate pipeline YAML files (errors with file:line), and start pipeline runs."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lakehouse.domain.pipelines import PipelineSpec


@dataclass
class SpecError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class LoadedSpec:
    spec: PipelineSpec
    path: Path
    text: str
    content_hash: str

    @property
    def folder(self) -> Path:
        return self.path.parent


class _LineLoader(yaml.SafeLoader):
    pass


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*path, k)] = key.start_mark.line + 1
            _lines(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def parse(text: str, path: str) -> tuple[PipelineSpec | None, list[SpecError]]:
    """Parse and validate one spec; every error carries file:line."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [SpecError(path, line, f"invalid YAML: {problem}")]
    if not isinstance(data, dict) or node is None:
        return None, [SpecError(path, 1, "a pipeline spec is a YAML mapping")]
    lines: dict[tuple[Any, ...], int] = {}
    _lines(node, (), lines)
    try:
        return PipelineSpec.model_validate(data), []
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
            line = 1
            for i in range(len(loc), -1, -1):
                if loc[:i] in lines:
                    line = lines[loc[:i]]
                    break
            where = ".".join(str(p) for p in loc) or "spec"
            msg = e["msg"].removeprefix("Value error, ")
            errors.append(SpecError(path, line, f"{where}: {msg}"))
        return None, errors


_UNION_TAGS = {"row_count", "not_null", "unique", "accepted_values", "relationship", "freshness", "schema"}


def load(path: Path) -> tuple[LoadedSpec | None, list[SpecError]]:
    try:
        text = path.read_text()
    except OSError as exc:
        return None, [SpecError(str(path), 0, f"cannot read: {exc.strerror}")]
    spec, errors = parse(text, str(path))
    if spec is None:
        return None, errors
    errors += _check_files(spec, path)
    if errors:
        return None, errors
    return LoadedSpec(spec, path, text, hashlib.sha256(text.encode()).hexdigest()), []


def _check_files(spec: PipelineSpec, path: Path) -> list[SpecError]:
    errors = []
    for i, t in enumerate(spec.transforms):
        if t.sql and not (path.parent / t.sql).is_file():
            errors.append(SpecError(str(path), _find_line(path, t.sql), f"transforms.{i}.sql: no file {t.sql}"))
    return errors


def _find_line(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n
    return 1


def discover(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        else:
            files.append(p)
    return files


def find(name: str, folder: Path) -> LoadedSpec:
    from lakehouse.services.errors import InvalidInput, NotFound

    for path in discover([folder]):
        loaded, errors = load(path)
        if loaded is not None and loaded.spec.name == name:
            return loaded
        if errors and path.stem == name:
            raise InvalidInput(f"pipeline {name} is invalid: {errors[0]}", code="invalid_pipeline",
                               details=[str(e) for e in errors])
    raise NotFound(f"no pipeline named {name!r} in {folder}", code="pipeline_not_found")


def git_sha_for(path: Path, content_hash: str) -> str:
    """The commit of the repository the spec lives in (with '-dirty' when the spec has local changes),
    or ``sha256:<content hash>`` when it is not in git."""
    try:
        top = subprocess.run(["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path.parent), "status", "--porcelain", "--", str(path.parent)],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return f"{top}-dirty" if dirty else top
    except (OSError, subprocess.SubprocessError):
        return f"sha256:{content_hash[:40]}"


def run_request(loaded: LoadedSpec, environment: str, params: dict[str, Any] | None = None,
                watermarks: dict[str, Any] | None = None, idempotency_key: str | None = None,
                workspace: str = "default") -> Any:
    """The run for a pipeline: its phases, and an input manifest that carries everything a stateless
    worker needs (the validated spec, the SQL texts, parameters and watermarks) so that the run
    records exactly what was executed."""
    from lakehouse.domain.runs import PhaseSpec, RunRequest

    spec = loaded.spec
    sql = {t.name: (loaded.folder / t.sql).read_text() for t in spec.transforms if t.sql}
    merged = {**spec.params, **(params or {})}
    manifest = {
        "pipeline": spec.name, "spec_version": spec.version, "spec_sha256": loaded.content_hash,
        "spec_path": loaded.path.name, "spec": spec.model_dump(mode="json"), "sql": sql, "params": merged,
        "watermarks": watermarks or {}, "environment": environment,
    }
    return RunRequest(
        spec_slug=spec.name, git_sha=git_sha_for(loaded.path, loaded.content_hash),
        phases=[PhaseSpec(**p) for p in spec.phases()], input_manifest=manifest, environment=environment,
        workspace=workspace, idempotency_key=idempotency_key,
        labels={"spec_version": str(spec.version), "kind": "pipeline"},
    )


def start_run(ctx: Any, principal: Any, name: str, environment: str = "dev", params: dict[str, Any] | None = None,
              idempotency_key: str | None = None, workspace: str = "default") -> tuple[dict[str, Any], bool]:
    from lakehouse.services import runs, watermarks, workspaces

    loaded = find(name, ctx.settings.pipelines_dir)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=True)
    marks = watermarks.current(ctx, ws_id, environment, name)
    req = run_request(loaded, environment, params, marks, idempotency_key, workspace)
    return runs.create_run(ctx, req, principal)


def list_specs(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in discover([folder]):
        loaded, errors = load(path)
        out.append({"path": str(path), "name": loaded.spec.name if loaded else path.stem,
                    "valid": loaded is not None, "errors": [str(e) for e in errors],
                    "version": loaded.spec.version if loaded else None,
                    "description": loaded.spec.description if loaded else "",
                    "phases": [p["name"] for p in loaded.spec.phases()] if loaded else []})
    return out
