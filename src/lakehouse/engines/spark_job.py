"""The Spark driver program the ``spark`` handler starts in a child process
(``python -m lakehouse.engines.spark_job job.json``): it opens the Spark application (``local[N]``, a
cluster master, or a Spark Connect ``sc://`` server), registers each input snapshot as a temporary
view (``silver.x`` → ``silver__x``, over the snapshot's Parquet data files), runs the SQL transforms
or the registered function, and writes every output as Parquet into the phase's workdir — never into
the lake: the handler stages those files only after this program exited cleanly.

SIGTERM (a cancel) interrupts the running jobs and stops the application before the process exits.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any


class Terminated(BaseException):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise Terminated()


def _progress(job: dict[str, Any], message: str, fraction: float) -> None:
    path = Path(job["progress"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"message": message, "fraction": fraction}))
    tmp.replace(path)
    print(f"[lakehouse] {message}", flush=True)


def session(job: dict[str, Any]) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(job["app_name"])
    builder = builder.remote(job["remote"]) if job.get("remote") else builder.master(job["master"])
    for key, value in sorted((job.get("conf") or {}).items()):
        builder = builder.config(key, str(value))
    return builder.getOrCreate()


def run(spark: Any, job: dict[str, Any]) -> dict[str, Any]:
    """Register the inputs, compute the outputs, write them under ``job['out_dir']``."""
    from lakehouse.engines.spark_sql import view_name

    frames: dict[str, Any] = {}
    for table, files in sorted((job.get("inputs") or {}).items()):
        df = spark.read.option("mergeSchema", "true").parquet(*files)
        df.createOrReplaceTempView(view_name(table))
        frames[table] = df
    results: dict[str, Any] = {}
    transforms = job.get("transforms") or []
    steps = len(transforms) or 1
    for i, t in enumerate(transforms):
        _progress(job, f"{t['name']} ({i + 1}/{len(transforms)})", i / steps)
        df = spark.sql(t["sql"])
        path = _write(df, job, t["output"])
        # later transforms read this output as written (the DuckDB path shows them earlier outputs too)
        spark.read.parquet(path).createOrReplaceTempView(view_name(t["output"]))
        results[t["output"]] = {"path": path, "transform": t["name"]}
    if job.get("callable"):
        from lakehouse.handlers.python import load_callable

        fn = load_callable(job["callable"])
        _progress(job, f"calling {job['callable']}", 0.0)
        produced = fn(spark, frames, job.get("args") or {})
        if not isinstance(produced, dict):
            raise TypeError(f"{job['callable']} must return {{'layer.table': DataFrame}}, not "
                            f"{type(produced).__name__}")
        for table, df in sorted(produced.items()):
            results[table] = {"path": _write(df, job, table), "transform": job["callable"]}
    _progress(job, "done", 1.0)
    return results


def _write(df: Any, job: dict[str, Any], table: str) -> str:
    path = str(Path(job["out_dir"]) / table)
    df.write.mode("overwrite").parquet(path)
    return path


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    signal.signal(signal.SIGTERM, _on_term)
    started = time.monotonic()
    spark = None
    try:
        spark = session(job)
        if not job.get("remote"):
            spark.sparkContext.setLogLevel(job.get("log_level") or "WARN")
        _progress(job, f"Spark {spark.version} up in {time.monotonic() - started:.1f}s", 0.0)
        results = run(spark, job)
        Path(job["result"]).write_text(json.dumps({"outputs": results, "spark_version": spark.version}))
        return 0
    except Terminated:
        print("[lakehouse] cancelled: stopping the Spark application", flush=True)
        if spark is not None:
            try:
                spark.interruptAll() if job.get("remote") else spark.sparkContext.cancelAllJobs()
            except Exception:
                pass
        return 143
    except Exception as exc:
        import traceback

        traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        Path(job["error"]).write_text(f"{type(exc).__name__}: {message}"[:2000])
        return 1
    finally:
        if spark is not None:
            try:
                spark.stop()
            except Exception:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
