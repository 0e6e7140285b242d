"""What a run read and produced, from its manifests: the Outputs and Inputs tabs of the run page.

Pure functions over what the run service returns (the run with its phases, its artifacts, its
DQ_RESULT events); the raw manifests stay one click away on the page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from lakehouse.lake.catalog import LAYERS

PREVIEW_TYPES = ("text/", "application/json", "application/x-ndjson", "application/yaml", "application/sql")
PREVIEW_SUFFIXES = (".json", ".csv", ".txt", ".sql", ".md", ".log", ".yaml", ".yml")


def previewable(art: dict[str, Any]) -> bool:
    return bool(str(art.get("media_type", "")).startswith(PREVIEW_TYPES) or str(art.get("name", "")).endswith(
        PREVIEW_SUFFIXES))


def table_links(name: str, env: str) -> dict[str, str | None]:
    """The catalog page and a SQL query of a lake table (``gold.revenue``); none for a non-lake name."""
    layer, _, table = name.partition(".")
    if layer not in LAYERS or not table:
        return {"table_url": None, "sql_url": None}
    sql = f"SELECT * FROM {layer}.{table} LIMIT 100"
    return {"table_url": f"/catalog/{env}/{layer}/{table}", "sql_url": "/sql?" + urlencode({"sql": sql, "env": env})}


def _tables(manifest: dict[str, Any], env: str, staged_only: bool) -> list[dict[str, Any]]:
    out = []
    for name, entry in sorted((manifest.get("outputs") or {}).items()):
        entry = entry if isinstance(entry, dict) else {}
        committed = entry.get("snapshot_id") is not None
        out.append({
            "name": name, "rows": entry.get("rows"), "snapshot_id": entry.get("snapshot_id"),
            "content_hash": entry.get("content_hash") or entry.get("sha256"),
            "columns": entry.get("columns") or [], "source": entry.get("source"),
            "committed": committed, "mode": "append" if name.startswith("bronze.") else "overwrite",
            **(table_links(name, env) if committed or not staged_only else {"table_url": None, "sql_url": None}),
        })
    return out


def outputs_summary(run: dict[str, Any], arts: list[dict[str, Any]], dq: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per phase, in run order: tables written (committed ones link to the catalog and to SQL), tables
    staged for publishing, artifacts, the DQ outcome and the watermarks it advanced or proposed."""
    env = run["environment"]
    by_phase: dict[str, list[dict[str, Any]]] = {}
    for a in arts:
        by_phase.setdefault(a["phase"], []).append({**a, "preview": previewable(a)})
    dq_by_phase: dict[str | None, list[dict[str, Any]]] = {}
    for e in dq:
        r = e["payload"].get("result", e["payload"]) if isinstance(e.get("payload"), dict) else {}
        dq_by_phase.setdefault(e.get("phase"), []).append(r)
    phases = []
    for ph in run["phases"]:
        manifest = ph.get("output_manifest") or {}
        tables = _tables(manifest, env, staged_only=True)
        results = dq_by_phase.get(ph["name"], [])
        dq_summary = manifest.get("dq") if isinstance(manifest.get("dq"), dict) else None
        if dq_summary is None and results:
            dq_summary = {"checks": len(results), "passed": sum(bool(r.get("passed")) for r in results),
                          "warnings": sum(not r.get("passed") and r.get("severity") == "warn" for r in results)}
        if dq_summary is not None:
            failed = dq_summary.get("checks", 0) - dq_summary.get("passed", 0) - dq_summary.get("warnings", 0)
            dq_summary = {**dq_summary, "failed": max(0, failed)}
        marks = manifest.get("watermarks") or {}
        pending = manifest.get("pending_watermarks") or {}
        phase_arts = by_phase.get(ph["name"], [])
        query = manifest.get("query") if isinstance(manifest.get("query"), dict) else None
        result = next((t for t in tables if t["name"] == "result"), None)  # a query phase's answer, not a table
        tables = [t for t in tables if t["name"] != "result"]
        empty = not (tables or phase_arts or dq_summary or marks or pending or query or result)
        phases.append({"name": ph["name"], "type": ph["type"], "status": ph["status"], "tables": tables,
                       "artifacts": phase_arts, "dq": dq_summary, "dq_results": results, "watermarks": marks,
                       "pending_watermarks": pending, "query": query, "result": result, "empty": empty,
                       "manifest": manifest})
    return phases


def inputs_summary(run: dict[str, Any]) -> dict[str, Any]:
    """Spec name and version, git sha, parameters and watermarks the run started from."""
    manifest = run.get("input_manifest") or {}
    labels = run.get("labels") or {}
    version = manifest.get("spec_version") or labels.get("spec_version")
    params: dict[str, Any] = manifest["params"] if isinstance(manifest.get("params"), dict) else {}
    marks: dict[str, Any] = manifest["watermarks"] if isinstance(manifest.get("watermarks"), dict) else {}
    return {"pipeline": manifest.get("pipeline") or run["spec_slug"], "version": version,
            "spec_path": manifest.get("spec_path"), "spec_sha256": manifest.get("spec_sha256"),
            "params": sorted(params.items()), "watermarks": sorted(marks.items()),
            "previous_outputs": sorted((manifest.get("previous_outputs") or {}).keys()),
            "sql": sorted((manifest.get("sql") or {}).items())}


def spec_version(run: dict[str, Any]) -> str | None:
    labels = run.get("labels") or {}
    manifest = run.get("input_manifest") or {}
    v = labels.get("spec_version") or manifest.get("spec_version")
    return str(v) if v is not None else None
