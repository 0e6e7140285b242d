"""A dbt project as a run carries it, and what dbt's artifacts tell us.

* :func:`pack` reads a project folder into ``{relative path: text}`` (what the run's input manifest
  holds, so that a stateless worker runs exactly the recorded project); Python models are refused —
  dbt would run them inside the worker, and Python runs only from modules an admin registered.
* :func:`model_outputs` maps the project's models to lake tables: a model's
  ``config.meta.lakehouse_output``, else ``params.outputs[model]``, else a model under
  ``models/<layer>/`` publishes to ``<layer>.<model name>``; other models are intermediate.
* :func:`lineage_edges` turns ``manifest.json``'s ``parent_map`` into lake-table edges (intermediate
  models collapsed into the sources they read).
* :func:`dq_results` turns the tests of ``run_results.json`` into data-quality results
  (``handlers/dq.py``'s shape)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

TEXT_SUFFIXES = (".sql", ".yml", ".yaml", ".md", ".csv", ".txt", ".jinja")
SKIP_DIRS = {"target", "dbt_packages", "logs", ".git", "__pycache__", ".venv"}
MAX_BYTES = 5 * 1024 * 1024
LAYERS = ("bronze", "silver", "gold")


class ProjectError(ValueError):
    pass


def check_files(files: dict[str, str]) -> None:
    if not isinstance(files, dict) or "dbt_project.yml" not in files:
        raise ProjectError("a dbt project needs a dbt_project.yml at its root")
    total = 0
    for name, text in files.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts or not isinstance(text, str):
            raise ProjectError(f"bad file name in the dbt project: {name!r}")
        if path.suffix == ".py":
            raise ProjectError(f"{name}: Python models are not allowed (Python runs only from registered modules)")
        if path.suffix not in TEXT_SUFFIXES:
            raise ProjectError(f"{name}: a dbt project here holds {', '.join(TEXT_SUFFIXES)} files only")
        total += len(text.encode())
    if total > MAX_BYTES:
        raise ProjectError(f"the dbt project is over {MAX_BYTES // (1024 * 1024)} MB")


def pack(folder: Path) -> dict[str, str]:
    """The project's files by relative path (build outputs and packages left out)."""
    folder = Path(folder)
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIP_DIRS for part in rel.parts) or not path.is_file():
            continue
        files[rel.as_posix()] = path.read_text() if path.suffix in TEXT_SUFFIXES else "<binary>"
    check_files(files)
    return files


def unpack(files: dict[str, str], dest: Path) -> Path:
    check_files(files)
    for name, text in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest


def profile_yaml(db_path: Path, allowed: list[str], threads: int = 1) -> str:
    import yaml

    return yaml.safe_dump({"lakehouse": {"target": "run", "outputs": {"run": {
        "type": "duckdb", "path": str(db_path), "schema": "main", "threads": threads,
        "plugins": [{"module": "lakehouse.engines.dbt_plugin", "config": {"allowed_directories": allowed}}],
    }}}}, sort_keys=True)


def models(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {uid: n for uid, n in (manifest.get("nodes") or {}).items() if n.get("resource_type") == "model"}


def model_outputs(manifest: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """model unique_id → lake table it publishes to."""
    overrides = overrides or {}
    out: dict[str, str] = {}
    for uid, node in models(manifest).items():
        meta = (node.get("config") or {}).get("meta") or node.get("meta") or {}
        folder = PurePosixPath(node.get("path") or "").parts
        if meta.get("lakehouse_output"):
            out[uid] = str(meta["lakehouse_output"])
        elif node["name"] in overrides:
            out[uid] = str(overrides[node["name"]])
        elif len(folder) > 1 and folder[0] in LAYERS and (node.get("config") or {}).get("materialized") != "ephemeral":
            out[uid] = f"{folder[0]}.{node['name']}"
    return out


def source_table(manifest: dict[str, Any], uid: str) -> str | None:
    """The lake table a dbt source stands for (``source('silver', 'x')`` → ``silver.x``)."""
    src = (manifest.get("sources") or {}).get(uid)
    if not src:
        return None
    schema = str(src.get("schema") or src.get("source_name") or "").lower()
    name = str(src.get("identifier") or src.get("name") or "").lower()
    return f"{schema}.{name}" if schema in LAYERS else None


def lineage_edges(manifest: dict[str, Any], outputs: dict[str, str]) -> list[dict[str, Any]]:
    """One edge per published model: the lake tables it reads, through intermediate models."""
    parents = manifest.get("parent_map") or {}

    def upstream(uid: str, seen: set[str]) -> set[str]:
        found: set[str] = set()
        for parent in parents.get(uid) or []:
            if parent in seen:
                continue
            seen.add(parent)
            if parent.startswith("source."):
                table = source_table(manifest, parent)
                if table:
                    found.add(table)
            elif parent in outputs:
                found.add(outputs[parent])
            else:
                found |= upstream(parent, seen)
        return found

    return [{"inputs": sorted(upstream(uid, set())), "outputs": [table]} for uid, table in sorted(outputs.items())]


def dq_results(manifest: dict[str, Any], run_results: dict[str, Any], outputs: dict[str, str]
               ) -> list[dict[str, Any]]:
    """dbt tests as data-quality results: table, type ``dbt:<test>``, severity, passed, message."""
    nodes = manifest.get("nodes") or {}
    out = []
    for r in run_results.get("results") or []:
        node = nodes.get(r.get("unique_id")) or {}
        if node.get("resource_type") != "test":
            continue
        attached = node.get("attached_node") or next(
            (d for d in (node.get("depends_on") or {}).get("nodes") or [] if d in outputs), None)
        table = outputs.get(attached or "") or next(
            (source_table(manifest, d) for d in (node.get("depends_on") or {}).get("nodes") or []
             if d.startswith("source.")), None) or f"dbt.{node.get('name', 'test')}"
        status = str(r.get("status"))
        severity = "warn" if status == "warn" or str((node.get("config") or {}).get("severity", "")).lower() == "warn" \
            else "error"
        failures = r.get("failures")
        meta = node.get("test_metadata") or {}
        column = node.get("column_name")
        message = r.get("message") or (f"{failures} failing row(s)" if failures else "passed")
        out.append({"table": table, "type": f"dbt:{meta.get('name') or node.get('name')}", "severity": severity,
                    "passed": status == "pass", "observed": {"failures": failures, "status": status},
                    "message": str(message)[:500], "check": {"unique_id": r.get("unique_id"),
                                                             **({"column": column} if column else {})}})
    return out
