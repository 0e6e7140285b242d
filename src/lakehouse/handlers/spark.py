"""The ``spark`` phase type: Spark SQL or a registered PySpark function over the run's workspace and
environment, in a Spark application of its own (``local[N]`` by default; a cluster master or a Spark
Connect ``sc://`` server through a ``spark`` connection), its outputs staged for ``publish``.

How it reads and writes (no Iceberg runtime jar is needed on Spark's side):

* each input table is pinned to its current Iceberg snapshot; Spark reads that snapshot's Parquet
  data files, from pyiceberg's scan plan, as the temporary view ``<layer>__<name>`` (SQL names
  ``silver.x`` are rewritten to it, ``engines/spark_sql.py``);
* Spark writes each output as Parquet into the phase's workdir; only when the application finished
  cleanly are the outputs staged (``handlers/staging.py``), and the ``publish`` phase commits each one
  to Iceberg in one atomic commit. A Spark job that fails or is cancelled mid-write stages and
  publishes nothing: every table stays at its previous snapshot.

What runs (``params``), exactly one of:

* ``sql`` + ``target`` (``layer.table``) — one Spark SQL query;
* ``transforms`` — ``[{name, sql, output}]`` run in order (later ones see earlier outputs);
* ``callable`` — ``module:function(spark, frames, args) -> {"layer.table": DataFrame}`` of a module an
  admin registered (``LAKEHOUSE_PYTHON_MODULES`` / ``lakehouse.python``, as the ``python`` type);
  ``inputs`` lists the tables it gets in ``frames``;
* nothing of these in a pipeline run — the pipeline's SQL transforms (the ``transform`` phase on Spark).

Resources: ``master`` (``local[N]`` only; default ``local[2]``) or ``connection`` (a ``spark``
connection fetched over the lease), ``driver_memory`` / ``executor_memory`` (``512m``, ``2g``; at most
64g), ``executor_cores``, ``cores`` (``local[N]``'s N, or ``spark.cores.max`` on a cluster),
``conf`` (``spark.sql.*`` keys only). The driver log and the Spark event log are artifacts.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError

INSTALL_HINT = "the spark phase type needs PySpark and Java 17: pip install 'lakehouse[spark]'"
_MEMORY = re.compile(r"^[1-9][0-9]{0,5}[mMgG]$")
_LOCAL = re.compile(r"^local\[([1-9][0-9]{0,2})\]$")
MAX_MEMORY_MB = 64 * 1024
MAX_CORES = 64


def run_spark(ctx: PhaseContext) -> dict[str, Any]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise PhaseError(INSTALL_HINT, retryable=False) from None
    from lakehouse.engines import lake_inputs, outputs
    from lakehouse.engines.process import run_child, tail
    from lakehouse.engines.spark_sql import references, to_spark
    from lakehouse.handlers.pipeline_common import _catalog, _scope, _settings

    settings = _settings(ctx)
    ws = _scope(ctx)
    catalog = _catalog(ctx)
    p = ctx.params
    variables = _variables(ctx)
    transforms, wanted = _plan(ctx)
    produced = {t["output"] for t in transforms}
    try:
        spark_transforms = [{**t, "sql": to_spark(t["sql"], variables)} for t in transforms]
    except ValueError as exc:
        raise PhaseError(str(exc), retryable=False) from None
    for t in transforms:
        wanted |= set(references(t["sql"]))
    in_scope = lake_inputs.scope_tables(catalog, ctx.environment, ws)
    earlier = set()
    for t in transforms:  # a table an earlier transform writes needs not exist in the lake yet
        missing = [r for r in references(t["sql"]) if r not in in_scope and r not in earlier]
        if missing:
            raise PhaseError(f"{t['name']}: no lake table {', '.join(missing)} in {ctx.environment}", retryable=False)
        earlier.add(t["output"])
    missing = sorted(r for r in wanted if r not in in_scope and r not in produced)
    if missing:
        raise PhaseError(f"no lake table {', '.join(missing)} in {ctx.environment}", retryable=False)
    inputs = {}
    for name in sorted(r for r in wanted if r in in_scope):
        ctx.check()
        inputs[name] = lake_inputs.snapshot_input(catalog, in_scope[name], ctx.workdir)
    master, remote = _master(ctx)
    work = ctx.workdir
    events = work / "spark-events"
    events.mkdir(exist_ok=True)
    (work / "spark-tmp").mkdir(exist_ok=True)
    job = {
        "app_name": f"lakehouse-{ctx.spec_slug}-{ctx.run_id[:8]}-{ctx.phase}"[:120],
        "master": master, "remote": remote, "conf": _conf(p, master, remote, events, work / "spark-tmp"),
        "inputs": {k: v.files for k, v in inputs.items()}, "transforms": spark_transforms,
        "callable": p.get("callable"), "args": p.get("args") or {},
        "out_dir": str(work / "spark-out"), "result": str(work / "result.json"), "error": str(work / "error.txt"),
        "progress": str(work / "progress.json"), "log_level": p.get("log_level") or "WARN",
    }
    if job["callable"]:
        from lakehouse.handlers.python import load_callable

        load_callable(str(job["callable"]))  # refused before Spark starts when an admin did not register it
    (work / "job.json").write_text(json.dumps(job))
    log = work / "driver.log"
    ctx.log(f"starting Spark ({remote or master}) over {len(inputs)} input table(s)", master=remote or master,
            inputs={k: v.snapshot_id for k, v in inputs.items()})
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    try:
        code = run_child(ctx, [sys.executable, "-m", "lakehouse.engines.spark_job", str(work / "job.json")], log,
                         cwd=work, env=env, on_poll=lambda: _forward_progress(ctx, work / "progress.json"))
    finally:
        _artifacts(ctx, log, events)
    if code != 0:
        error = work / "error.txt"
        if error.exists():
            raise PhaseError(f"Spark job failed: {error.read_text()}", retryable=False)
        raise PhaseError(f"Spark exited with code {code}: {tail(log, 5)}", retryable=True)
    result = json.loads((work / "result.json").read_text())
    results = {}
    for table, entry in result["outputs"].items():
        table = outputs.check_output(table)
        if table not in produced and not p.get("callable"):
            raise PhaseError(f"Spark wrote an undeclared output {table}", retryable=False)
        declared = p.get("outputs")
        if p.get("callable") and declared is not None and table not in declared:
            raise PhaseError(f"{p['callable']} returned {table}, which params.outputs does not declare",
                             retryable=False)
        data = _read_output(Path(entry["path"]))
        used = sorted(wanted) if p.get("callable") else \
            next(references(t["sql"]) for t in transforms if t["output"] == table)
        results[table] = (data, used, {"transform": entry["transform"], "engine": "spark"})
    staged, edges = outputs.stage_all(ctx, settings, results)
    for table, entry in staged.items():
        ctx.log(f"{entry['transform']}: {entry['rows']} rows → {table}", rows=entry["rows"], table=table)
    return {"outputs": staged, "edges": edges, "as_of": variables.get("as_of"),
            "reads": {k: v.snapshot_id for k, v in inputs.items()},
            "engine": {"name": "spark", "version": result.get("spark_version"), "master": remote or master}}


def _variables(ctx: PhaseContext) -> dict[str, Any]:
    """What ``getvariable('x')`` reads: the run's parameters, ``as_of`` defaulting to today (as the
    DuckDB transform does), then the phase's ``args``."""
    params = dict(ctx.input_manifest.get("params") or {})
    params.update(ctx.params.get("args") or {})
    if not params.get("as_of"):
        params["as_of"] = ctx.input_manifest.get("as_of") or datetime.now(UTC).date().isoformat()
    return params


def _plan(ctx: PhaseContext) -> tuple[list[dict[str, Any]], set[str]]:
    """The SQL transforms to run and the extra input tables (for a callable)."""
    from lakehouse.engines.outputs import check_output

    p = ctx.params
    given = [k for k in ("sql", "transforms", "callable") if p.get(k)]
    if len(given) > 1:
        raise PhaseError(f"give one of params.sql, params.transforms or params.callable, not {given}",
                         retryable=False)
    if p.get("sql"):
        if not isinstance(p["sql"], str) or not p.get("target"):
            raise PhaseError("params.sql is a SQL string and params.target its output table", retryable=False)
        return [{"name": "query", "sql": p["sql"], "output": check_output(p["target"])}], set()
    if p.get("transforms"):
        out = []
        for i, t in enumerate(p["transforms"]):
            if not isinstance(t, dict) or not isinstance(t.get("sql"), str) or not t.get("output"):
                raise PhaseError(f"params.transforms[{i}] needs sql and output", retryable=False)
            out.append({"name": str(t.get("name") or f"t{i}"), "sql": t["sql"], "output": check_output(t["output"])})
        return out, set()
    if p.get("callable"):
        inputs = p.get("inputs") or []
        if not isinstance(inputs, list):
            raise PhaseError("params.inputs is a list of layer.table names", retryable=False)
        return [], {check_output(t) for t in inputs}
    spec = ctx.input_manifest.get("spec")
    if not isinstance(spec, dict) or not spec.get("transforms"):
        raise PhaseError("a spark phase needs params.sql, params.transforms or params.callable "
                         "(or a pipeline spec with transforms)", retryable=False)
    texts = ctx.input_manifest.get("sql") or {}
    out = []
    for t in spec["transforms"]:
        if not t.get("sql"):
            raise PhaseError(f"transform {t['name']} is a Python transform; Spark runs SQL transforms only",
                             retryable=False)
        if not texts.get(t["name"]):
            raise PhaseError(f"the run carries no SQL for transform {t['name']}", retryable=False)
        out.append({"name": t["name"], "sql": texts[t["name"]], "output": check_output(t["output"])})
    return out, set()


def _master(ctx: PhaseContext) -> tuple[str, str | None]:
    """(master, Spark Connect URL): a connection's master, else ``params.master`` (``local[N]`` only)."""
    name = ctx.params.get("connection")
    if name:
        handed = ctx.leased_connection(str(name), "spark")
        master = str((handed.get("config") or {}).get("master") or "")
        if master.startswith("sc://"):
            return "", master
        if not master:
            raise PhaseError(f"connection {name} has no master URL", retryable=False)
        return master, None
    master = str(ctx.params.get("master") or "")
    cores = ctx.params.get("cores")
    if not master:
        master = f"local[{int(cores) if isinstance(cores, int) and not isinstance(cores, bool) else 2}]"
    m = _LOCAL.match(master)
    if not m:
        raise PhaseError(f"params.master may only be local[N]; a cluster goes through a spark connection, "
                         f"not {master!r}", retryable=False)
    if int(m.group(1)) > min(MAX_CORES, os.cpu_count() or 1):
        raise PhaseError(f"{master}: this worker has {os.cpu_count()} cores", retryable=False)
    return master, None


def _memory(value: Any, field: str) -> str:
    text = str(value)
    if not _MEMORY.match(text):
        raise PhaseError(f"params.{field} is like 512m or 2g, not {value!r}", retryable=False)
    mb = int(text[:-1]) * (1024 if text[-1] in "gG" else 1)
    if mb > MAX_MEMORY_MB:
        raise PhaseError(f"params.{field} {text} is over the cap of {MAX_MEMORY_MB // 1024}g", retryable=False)
    return text.lower()


def _conf(p: dict[str, Any], master: str, remote: str | None, events: Path, tmp: Path) -> dict[str, str]:
    conf: dict[str, str] = {"spark.sql.session.timeZone": "UTC",
                            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
                            "spark.sql.shuffle.partitions": "8"}
    user = p.get("conf") or {}
    if not isinstance(user, dict) or any(not str(k).startswith("spark.sql.") for k in user):
        raise PhaseError("params.conf may set spark.sql.* keys only", retryable=False)
    conf.update({str(k): str(v) for k, v in user.items()})
    if remote:  # a Spark Connect session: the server owns resources and its event log
        return conf
    conf.update({"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                 "spark.eventLog.enabled": "true", "spark.eventLog.rolling.enabled": "false",
                 "spark.eventLog.dir": events.as_uri(), "spark.local.dir": str(tmp),
                 "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={tmp}"})
    for field, key in (("driver_memory", "spark.driver.memory"), ("executor_memory", "spark.executor.memory")):
        if p.get(field):
            conf[key] = _memory(p[field], field)
    cores = p.get("cores")
    if p.get("executor_cores"):
        n = p["executor_cores"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CORES:
            raise PhaseError(f"params.executor_cores is 1-{MAX_CORES}", retryable=False)
        conf["spark.executor.cores"] = str(n)
    if cores is not None and not master.startswith("local"):
        if not isinstance(cores, int) or isinstance(cores, bool) or not 1 <= cores <= 1024:
            raise PhaseError("params.cores is 1-1024", retryable=False)
        conf["spark.cores.max"] = str(cores)
    return conf


def _forward_progress(ctx: PhaseContext, path: Path) -> None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    ctx.progress(str(info.get("message", "")), fraction=info.get("fraction"))


def _read_output(path: Path) -> Any:
    import pyarrow.parquet as pq

    if not (path / "_SUCCESS").exists():
        raise PhaseError(f"Spark did not finish writing {path.name}", retryable=True)
    return pq.read_table(path)


def _artifacts(ctx: PhaseContext, log: Path, events: Path) -> None:
    """The driver log and the event log, uploaded whatever the outcome (a failed job needs them most)."""
    if ctx.client is None:
        return
    files = [("spark-driver.log", log, "text/plain")]
    files += [(f"spark-events-{f.name.removesuffix('.inprogress')}.json", f, "application/x-ndjson")
              for f in sorted(events.glob("*")) if f.is_file()]
    for name, path, media in files:
        if path.exists() and path.stat().st_size:
            try:
                ctx.add_artifact(name, path, media, {"bytes": path.stat().st_size})
            except Exception as exc:  # an artifact store hiccup must not hide the job's own outcome
                ctx.log(f"could not upload {name}: {exc}", level="warning")
