"""The ``dbt`` phase type: dbt-core with dbt-duckdb over the run's workspace and environment.

The run carries the project (``input_manifest.dbt_project``: ``{path: text}``, see
``engines/dbt_project.py``); the worker writes it to the phase's workdir and prepares a DuckDB file
where every lake table of the run's scope is a view over ``iceberg_scan`` pinned to its current
snapshot (``silver.journal_lines`` …, what the project's ``source('silver', …)`` reads). Then, in a
child process (a cancel stops it):

1. ``dbt parse`` — a project that does not parse or compile fails the phase (not retried);
2. the published tables of the incremental models are loaded into the DuckDB file, so dbt runs them
   incrementally (``is_incremental()`` is true and ``{{ this }}`` holds the published rows);
3. ``dbt <command>`` (``params.command``: ``build`` (default), ``run`` or ``test``) with
   ``params.select`` / ``exclude`` / ``selector``, the run's parameters as ``--vars``.

``params.engine`` chooses where the models run: ``duckdb`` (default, the above) or ``trino`` —
dbt-trino on the Trino connection ``params.connection`` names (the run declares it), models built in
the run's scratch schema and read back to be staged the same way (``engines/dbt_trino.py``).

``manifest.json`` and ``run_results.json`` are artifacts; each dbt test is a ``DQ_RESULT`` event
(and ``dq_results.json``); a failing error-severity test or a failed model fails the phase and stages
nothing. The models' outputs (``engines/dbt_project.model_outputs``) are staged like pipeline transform
outputs and committed by ``publish``; model lineage (``parent_map``) is in ``lineage.edges``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError

INSTALL_HINT = "the dbt phase type needs dbt-core and dbt-duckdb: pip install 'lakehouse[dbt]'"
COMMANDS = ("build", "run", "test")
ENGINES = ("duckdb", "trino")
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "VIRTUAL_ENV", "PYTHONPATH")


def run_dbt(ctx: PhaseContext) -> dict[str, Any]:
    import importlib.util

    engine = str(ctx.params.get("engine") or "duckdb")
    if engine not in ENGINES:
        raise PhaseError(f"params.engine is one of {', '.join(ENGINES)}, not {engine!r}", retryable=False)
    if importlib.util.find_spec("dbt") is None or importlib.util.find_spec(f"dbt.adapters.{engine}") is None:
        from lakehouse.engines.dbt_trino import INSTALL_HINT as TRINO_HINT

        raise PhaseError(TRINO_HINT if engine == "trino" else INSTALL_HINT, retryable=False)
    from lakehouse.engines import dbt_project as proj
    from lakehouse.engines import lake_inputs
    from lakehouse.engines.process import run_child
    from lakehouse.handlers.pipeline_common import _catalog, _scope

    ws = _scope(ctx)
    catalog = _catalog(ctx)
    p = ctx.params
    command = str(p.get("command") or "build")
    if command not in COMMANDS:
        raise PhaseError(f"params.command is one of {', '.join(COMMANDS)}, not {command!r}", retryable=False)
    files = ctx.input_manifest.get("dbt_project") or p.get("project_files")
    try:
        project = proj.unpack(files or {}, ctx.workdir / "project")
    except proj.ProjectError as exc:
        raise PhaseError(f"dbt project: {exc}", retryable=False) from None
    work = ctx.workdir
    target, logs = work / "target", work / "dbt-logs"
    db_path = work / "lake.duckdb"
    in_scope = lake_inputs.scope_tables(catalog, ctx.environment, ws)
    threads = int(p.get("threads") or 1)
    log = work / "dbt.log"
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("DBT_")}  # no secrets for env_var()
    env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false", "DBT_PARTIAL_PARSE": "false"})
    variables = {**(ctx.input_manifest.get("params") or {}), **(p.get("args") or {}), **(p.get("vars") or {})}
    common = ["--project-dir", str(project), "--profiles-dir", str(work), "--profile", "lakehouse",
              "--target", "run", "--target-path", str(target), "--log-path", str(logs)]

    def invoke(*args: str) -> int:
        argv = [sys.executable, "-c", "import sys; from dbt.cli.main import cli; sys.exit(cli())", *args]
        with open(log, "a") as f:
            f.write(f"$ dbt {' '.join(args)}\n")
        return run_child(ctx, argv, log, cwd=work, env=env)

    trino: Any = None
    try:
        if engine == "trino":
            trino, pinned = _prepare_trino(ctx, project, in_scope, threads)
        else:
            pinned = _prepare_database(db_path, in_scope)
            allowed = sorted({r.location.rstrip("/") + "/" for r in in_scope.values()} | {str(work) + "/"})
            (work / "profiles.yml").write_text(proj.profile_yaml(db_path, allowed, threads))
        return _run(ctx, engine, trino, invoke, common, variables, command, target, log, db_path, in_scope, pinned)
    finally:
        (work / "profiles.yml").unlink(missing_ok=True)  # it may hold the connection's password
        if trino is not None:
            _drop_scratch(ctx, trino)


def _run(ctx: PhaseContext, engine: str, trino: Any, invoke: Any, common: list[str], variables: dict[str, Any],
         command: str, target: Path, log: Path, db_path: Path, in_scope: dict[str, Any], pinned: dict[str, Any]
         ) -> dict[str, Any]:
    from lakehouse.engines import dbt_project as proj
    from lakehouse.engines import outputs
    from lakehouse.engines.process import tail
    from lakehouse.handlers.pipeline_common import _settings

    p = ctx.params
    work = ctx.workdir
    try:
        ctx.progress("dbt parse", fraction=0.0)
        if invoke("parse", *common, "--vars", json.dumps(variables, default=str)) != 0:
            raise PhaseError(f"the dbt project does not compile: {_dbt_error(log, tail)}", retryable=False)
        manifest = json.loads((target / "manifest.json").read_text())
        mapping = proj.model_outputs(manifest, p.get("outputs") or {})
        for uid, table in mapping.items():
            mapping[uid] = outputs.check_output(table)
        if trino is not None:
            _seed_incremental_trino(ctx, trino, manifest, mapping, in_scope)
        else:
            _load_incremental(db_path, manifest, mapping, in_scope)
        selection = _selection(p)
        ctx.progress(f"dbt {command}", fraction=0.1)
        code = invoke(command, *common, "--vars", json.dumps(variables, default=str), *selection)
        results = _read_json(target / "run_results.json")
        manifest = _read_json(target / "manifest.json") or manifest
        if not results:
            raise PhaseError(f"dbt {command} did not run: {_dbt_error(log, tail)}", retryable=False)
    finally:
        _artifacts(ctx, target, log)
    dq = proj.dq_results(manifest, results, mapping)
    for r in dq:
        ctx.log(f"{'✔' if r['passed'] else '✖'} {r['type']} on {r['table']}: {r['message']}",
                level="info" if r["passed"] else ("error" if r["severity"] == "error" else "warning"),
                type_="DQ_RESULT", result=r)
    if dq and ctx.client is not None:
        path = work / "dq_results.json"
        path.write_text(json.dumps(dq, indent=2, default=str))
        ctx.add_artifact("dq_results.json", path, "application/json",
                         {"checks": len(dq), "failed": sum(not r["passed"] for r in dq)})
    blocking_tests = [r for r in dq if not r["passed"] and r["severity"] == "error"]
    model_errors = [r for r in results["results"] if r.get("status") in ("error", "runtime error")
                    and not str(r.get("unique_id", "")).startswith("test.")]
    if code != 0 or blocking_tests or model_errors:
        parts = [f"{r['unique_id']}: {str(r.get('message') or r.get('status'))[:300]}" for r in model_errors[:3]]
        parts += [f"{r['type']} on {r['table']}: {r['message']}" for r in blocking_tests[:5]]
        raise PhaseError(f"dbt {command} failed: " + ("; ".join(parts) or _dbt_error(log, tail)), retryable=False)
    ran = {r["unique_id"] for r in results["results"] if r.get("status") == "success"}
    edges_all = {e["outputs"][0]: e["inputs"] for e in proj.lineage_edges(manifest, mapping)}
    staged_in: dict[str, Any] = {}
    for uid, table in sorted(mapping.items()):
        if uid not in ran:
            continue
        ctx.check()
        node = manifest["nodes"][uid]
        data = _read_trino_model(trino, node) if trino is not None else _read_model(db_path, node)
        staged_in[table] = (data, edges_all.get(table, []), {"transform": manifest["nodes"][uid]["name"],
                                                              "engine": "dbt"})
    staged, edges = outputs.stage_all(ctx, _settings(ctx), staged_in)
    for table, entry in staged.items():
        ctx.log(f"{entry['transform']}: {entry['rows']} rows → {table}", rows=entry["rows"], table=table)
    return {"outputs": staged, "edges": edges, "lineage": {"edges": edges},
            "reads": pinned, "dq": {"checks": len(dq), "passed": sum(r["passed"] for r in dq),
                                    "warnings": sum(not r["passed"] for r in dq)},
            "dbt": {"command": command, "selection": selection, "engine": engine,
                    "models": sorted(manifest["nodes"][u]["name"] for u in ran if u in manifest["nodes"]
                                     and manifest["nodes"][u].get("resource_type") == "model"),
                    "parent_map": {k: v for k, v in (manifest.get("parent_map") or {}).items()
                                   if k.startswith("model.")}}}


def _prepare_trino(ctx: PhaseContext, project: Path, in_scope: dict[str, Any], threads: int
                   ) -> tuple[Any, dict[str, int | None]]:
    """The trino target: the connection for this lease, dbt-trino's profile (0600, removed after the
    run), the ``source()`` macro for our layers' schemas, and the handler's own Trino session."""
    from lakehouse.engines import dbt_trino

    config, secrets = dbt_trino.lease_connection(ctx, ctx.params.get("connection"))
    schema = dbt_trino.scratch_schema(ctx.environment, ctx.run_id)
    dbt_trino.write_profile(ctx.workdir, dbt_trino.profile(config, secrets, schema, threads))
    dbt_trino.add_source_macro(project, ctx.environment)
    session = dbt_trino.TrinoSession(config, secrets, schema, source=f"lakehouse/{ctx.run_id}/{ctx.phase}")
    where = f"{config.get('host')}:{config.get('port') or 8080}"
    ctx.log(f"dbt runs on Trino {where} as {config.get('user') or 'lakehouse'}, models built in "
            f"{session.catalog}.{schema}", engine="trino", schema=schema)
    pinned = {name: _current_snapshot(ctx, ref) for name, ref in sorted(in_scope.items())}
    return session, pinned


def _current_snapshot(ctx: PhaseContext, ref: Any) -> int | None:
    from lakehouse.lake import tables as lake_tables

    snap = lake_tables.load(ctx.catalog, ref.layer, ref.env, ref.name, ref.workspace).metadata.current_snapshot_id
    return int(snap) if snap is not None else None


def _seed_incremental_trino(ctx: PhaseContext, trino: Any, manifest: dict[str, Any], mapping: dict[str, str],
                            in_scope: dict[str, Any]) -> None:
    """An incremental model whose table is published starts from the published rows (in the scratch
    schema, where dbt-trino finds ``{{ this }}``)."""
    from lakehouse.engines.dbt_project import models

    for uid, node in models(manifest).items():
        table = mapping.get(uid)
        if (node.get("config") or {}).get("materialized") != "incremental" or table not in in_scope:
            continue
        ref = in_scope[table]
        try:
            trino.seed_incremental(str(node.get("alias") or node["name"]), ref.layer, ctx.environment, ref.name)
        except PhaseError:
            raise
        except Exception as exc:
            raise PhaseError(f"cannot start incremental model {node['name']} on Trino: {_trino_error(exc)}",
                             retryable=True) from None


def _read_trino_model(trino: Any, node: dict[str, Any]) -> Any:
    try:
        return trino.read(node)
    except PhaseError:
        raise
    except Exception as exc:
        raise PhaseError(f"cannot read the output of model {node['name']} from Trino: {_trino_error(exc)}",
                         retryable=True) from None


def _drop_scratch(ctx: PhaseContext, trino: Any) -> None:
    try:
        trino.drop_scratch()
    except Exception as exc:
        ctx.log(f"could not drop the scratch schema {trino.schema} on Trino: {_trino_error(exc)}", level="warning")
    finally:
        trino.close()


def _trino_error(exc: Exception) -> str:
    """One line for a Trino client error (its message, never the connection's secrets)."""
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {str(message)[:300]}"


def _selection(p: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("select", "exclude"):
        value = p.get(key)
        if value:
            items = value if isinstance(value, list) else str(value).split()
            if not all(isinstance(i, str) and i and not i.startswith("-") for i in items):
                raise PhaseError(f"params.{key} is a list of dbt selectors", retryable=False)
            out += [f"--{key}", *items]
    if p.get("selector"):
        if not isinstance(p["selector"], str) or p["selector"].startswith("-"):
            raise PhaseError("params.selector is the name of a YAML selector", retryable=False)
        out += ["--selector", p["selector"]]
    return out


def _prepare_database(db_path: Path, in_scope: dict[str, Any]) -> dict[str, int | None]:
    """The DuckDB file dbt works in: one view per lake table of the scope, pinned to its current
    metadata file (so every model of the run reads the same snapshots); returns the snapshot ids."""
    from lakehouse.lake import duck

    con = duck.new_connection("avro", "iceberg")
    try:
        con.execute(f"ATTACH '{db_path.as_posix()}' AS lake")
        con.execute("USE lake")
        for layer in ("bronze", "silver", "gold"):
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        pinned: dict[str, int | None] = {}
        for name, ref in sorted(in_scope.items()):
            loc = ref.metadata_location.replace("'", "''")
            con.execute(f'CREATE OR REPLACE VIEW "{ref.layer}"."{ref.name}" AS SELECT * FROM iceberg_scan(\'{loc}\')')
            pinned[name] = _snapshot_id(con, loc)
    finally:
        con.close()
    return pinned


def _snapshot_id(con: Any, metadata_location: str) -> int | None:
    row = con.execute(f"SELECT snapshot_id FROM iceberg_snapshots('{metadata_location}') "
                      "ORDER BY sequence_number DESC LIMIT 1").fetchone()
    return int(row[0]) if row else None


def _load_incremental(db_path: Path, manifest: dict[str, Any], mapping: dict[str, str], in_scope: dict[str, Any]
                      ) -> None:
    """An incremental model whose table is published starts from the published rows."""
    from lakehouse.engines.dbt_project import models
    from lakehouse.lake import duck

    wanted = [(n, mapping[uid]) for uid, n in models(manifest).items()
              if (n.get("config") or {}).get("materialized") == "incremental" and mapping.get(uid) in in_scope]
    if not wanted:
        return
    con = duck.new_connection("avro", "iceberg")
    try:
        con.execute(f"ATTACH '{db_path.as_posix()}' AS lake")
        for node, table in wanted:
            loc = in_scope[table].metadata_location.replace("'", "''")
            schema = node.get("schema") or "main"
            con.execute(f'CREATE SCHEMA IF NOT EXISTS lake."{schema}"')
            con.execute(f'CREATE OR REPLACE TABLE lake."{schema}"."{node.get("alias") or node["name"]}" AS '
                        f"SELECT * FROM iceberg_scan('{loc}')")
    finally:
        con.close()


def _read_model(db_path: Path, node: dict[str, Any]) -> Any:
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        schema = node.get("schema") or "main"
        return con.execute(f'SELECT * FROM "{schema}"."{node.get("alias") or node["name"]}"').to_arrow_table()
    except duckdb.Error as exc:
        raise PhaseError(f"cannot read the output of model {node['name']}: {exc}", retryable=False) from None
    finally:
        con.close()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def _dbt_error(log: Path, tail: Any) -> str:
    """dbt's error report (from its last "Encountered an error" / "… Error in …" on), else the error
    lines of its output, else its last lines."""
    lines = [ln.strip() for ln in (log.read_text(errors="replace").splitlines() if log.exists() else [])]
    lines = [re.sub(r"^(\x1b\[[0-9;]*m)*\d\d:\d\d:\d\d\s+", "", ln) for ln in lines if ln]
    start = max((i for i, ln in enumerate(lines) if "Encountered an error" in ln or re.search(r"\w+ Error in ", ln)),
                default=None)
    if start is not None:
        return " | ".join(lines[start:start + 8])[:1500]
    marked = [ln for ln in lines if "error" in ln.lower() and not ln.startswith("$ dbt")]
    return " | ".join(marked[-6:])[-1500:] or tail(log, 8)


def _artifacts(ctx: PhaseContext, target: Path, log: Path) -> None:
    if ctx.client is None:
        return
    for name, path, media in (("manifest.json", target / "manifest.json", "application/json"),
                              ("run_results.json", target / "run_results.json", "application/json"),
                              ("dbt.log", log, "text/plain")):
        if path.exists() and path.stat().st_size:
            try:
                ctx.add_artifact(name, path, media, {"bytes": path.stat().st_size})
            except Exception as exc:
                ctx.log(f"could not upload {name}: {exc}", level="warning")
