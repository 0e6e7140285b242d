"""The three reference pipelines at scale, through real workers, beside the same silver/gold SQL in
pyspark ``local[2]`` on the same bronze data, in one run.

    .venv/bin/python bench/medallion.py [--scale 1000] [--skip-spark] [--spark]

``--spark`` also runs silver_to_gold a second time in the same invocation, on the same silver snapshot,
with its transform phase on our ``spark`` phase type (Spark ``local[2]``, handlers/spark.py: a Spark
application per phase, staged Parquet, the same validate → publish), and compares it with the DuckDB
run: phase times and the gold tables' content hashes (they must be equal).

``--scale 1000`` seeds ~1M Odoo journal lines into a PostgreSQL source. The control plane runs
embedded (SQLite metadata, local Iceberg warehouse) with two `lakehouse worker` processes. Spark
reads the Parquet data files of the bronze Iceberg snapshot (no Iceberg runtime jar can be had
offline: Maven is not reachable here) and runs the same SQL files, translated where the dialects differ
(``json_extract_string`` → ``get_json_object``, ``getvariable('as_of')`` → a literal).
Prints one JSON document on stdout and a summary on stderr.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.endswith("/bench")]

import argparse
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ADMIN = os.environ.get("LAKEHOUSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).parents[1]
AS_OF = "2025-12-31"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def seconds(a: Any, b: Any) -> float:
    return round((b - a).total_seconds(), 3) if a and b else 0.0


SPARK_PHASE = {"type": "spark", "params": {"master": "local[2]", "driver_memory": "768m"}}


def run_ours(home: Path, source: str, workers: int, spark_phase: bool = False) -> dict[str, Any]:
    os.environ.update({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_ODOO_URL": source,
                       "LAKEHOUSE_PIPELINES_DIR": str(ROOT / "pipelines"), "LAKEHOUSE_LOG_LEVEL": "WARNING"})
    os.environ.pop("LAKEHOUSE_DATABASE_URL", None)
    os.environ.pop("LAKEHOUSE_WAREHOUSE", None)
    from lakehouse.cli.demo import watch
    from lakehouse.cli.server import Running
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.domain.runs import PhaseSpec
    from lakehouse.services import pipelines, runs
    from lakehouse.services.context import open_context
    from lakehouse.settings import Settings
    from lakehouse.store.migrations import upgrade

    settings = Settings(port=_free_port())
    settings.ensure_home()
    upgrade(settings.database_url)
    ctx = open_context(settings)
    out: dict[str, Any] = {}
    with Running(ctx, settings.host, settings.port, workers, worker_log_level="WARNING"):
        for name, params in (("odoo_ingest_bronze", None), ("bronze_to_silver", None),
                             ("silver_to_gold", {"as_of": AS_OF})):
            run, _ = pipelines.start_run(ctx, SYSTEM, name, "dev", params)
            final = watch(ctx, run["run_id"], timeout_s=3600, title=name)
            if final["status"] != "succeeded":
                raise SystemExit(f"{name} {final['status']}: {final['error']}")
            out[name] = {"wall_s": seconds(final["created_at"], final["finished_at"]),
                         "phases": {p["name"]: seconds(p["started_at"], p["finished_at"]) for p in final["phases"]}}
            log(f"{name}: {out[name]['wall_s']} s {out[name]['phases']}")
            out[name]["hashes"] = _hashes(final)
        if spark_phase:  # the same gold on our spark phase type, same silver, same run of this script
            req = pipelines.run_request(pipelines.find("silver_to_gold", settings.pipelines_dir), "dev",
                                        {"as_of": AS_OF})
            req.phases = [PhaseSpec(**{**p.model_dump(exclude_none=True), **SPARK_PHASE})
                          if p.name == "transform" else p for p in req.phases]
            run, _ = runs.create_run(ctx, req, SYSTEM)
            final = watch(ctx, run["run_id"], timeout_s=3600, title="silver_to_gold on spark")
            if final["status"] != "succeeded":
                raise SystemExit(f"silver_to_gold on spark {final['status']}: {final['error']}")
            out["silver_to_gold_spark_phase"] = {
                "wall_s": seconds(final["created_at"], final["finished_at"]),
                "phases": {p["name"]: seconds(p["started_at"], p["finished_at"]) for p in final["phases"]},
                "hashes": _hashes(final)}
            log(f"silver_to_gold on spark: {out['silver_to_gold_spark_phase']['wall_s']} s "
                f"{out['silver_to_gold_spark_phase']['phases']}")
    return out


def _hashes(run: dict[str, Any]) -> dict[str, str]:
    """Content hash of each table the run's transform phase staged."""
    phase = next((p for p in run["phases"] if p["name"] == "transform"), None)
    outputs = ((phase or {}).get("output_manifest") or {}).get("outputs") or {}
    return {t: e.get("content_hash") for t, e in outputs.items() if isinstance(e, dict)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spark_sql(text: str) -> str:
    text = re.sub(r"json_extract_string\(([^,]+),", r"get_json_object(\1,", text)
    text = re.sub(r"\b(bronze|silver|gold)\.([a-z_][a-z0-9_]*)", r"\1__\2", text)  # temp views: bronze__x
    text = text.replace("::VARCHAR", "::STRING")
    text = text.replace("getvariable('as_of')::DATE - coalesce(l.date_maturity, l.date)",
                        f"datediff(DATE '{AS_OF}', coalesce(l.date_maturity, l.date))")
    return text.replace("getvariable('as_of')", f"DATE '{AS_OF}'")


def run_spark(home: Path) -> dict[str, Any]:
    import yaml
    from pyspark.sql import SparkSession

    from lakehouse.lake import tables as lake_tables
    from lakehouse.lake.catalog import open_catalog

    catalog = open_catalog(f"sqlite:///{home / 'control.db'}", str(home / "warehouse"))
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # loopback only
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]").appName("medallion-bench")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false")
             .config("spark.sql.warehouse.dir", str(home / "spark-warehouse")).getOrCreate())
    startup = time.perf_counter() - t0
    spark.sparkContext.setLogLevel("ERROR")
    for ref in lake_tables.list_tables(catalog, env="dev", layer="bronze"):
        table = lake_tables.load(catalog, "bronze", "dev", ref.name)
        files = [t.file.file_path for t in table.scan().plan_files()]
        spark.read.parquet(*files).createOrReplaceTempView(f"bronze__{ref.name}")
    timings: dict[str, float] = {}
    for pipeline in ("bronze_to_silver", "silver_to_gold"):
        spec = yaml.safe_load((ROOT / "pipelines" / f"{pipeline}.yaml").read_text())
        start = time.perf_counter()
        for t in spec["transforms"]:
            sql = spark_sql((ROOT / "pipelines" / t["sql"]).read_text())
            layer, name = t["output"].split(".")
            df = spark.sql(sql)
            df.write.mode("overwrite").parquet(str(home / "spark-out" / layer / name))
            spark.read.parquet(str(home / "spark-out" / layer / name)).createOrReplaceTempView(f"{layer}__{name}")
        timings[pipeline] = round(time.perf_counter() - start, 3)
        log(f"spark {pipeline}: {timings[pipeline]} s")
    spark.stop()
    return {"startup_s": round(startup, 3), **timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-spark", action="store_true", help="no pyspark run of the SQL files beside ours")
    ap.add_argument("--spark", action="store_true",
                    help="also run silver_to_gold with its transform on our spark phase type (local[2])")
    ap.add_argument("--spark-only", metavar="HOME", help="only the Spark side, on the bronze of an earlier --keep")
    ap.add_argument("--keep", metavar="HOME", help="use (and keep) this LAKEHOUSE_HOME instead of a temp folder")
    args = ap.parse_args()
    if args.spark_only:
        print(json.dumps({"spark_local2": run_spark(Path(args.spark_only))}, indent=2))
        return
    from lakehouse.connectors.odoo_seed import seed

    name = f"lakehouse_bench_medallion_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    source = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        t0 = time.perf_counter()
        counts = seed(source, args.scale, progress=True)
        log(f"seeded scale {args.scale}: {counts['account_move_line']:,} journal lines in "
            f"{time.perf_counter() - t0:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(args.keep) if args.keep else Path(tmp)
            ours = run_ours(home, source, args.workers, spark_phase=args.spark)
            spark = None if args.skip_spark else run_spark(home)
        result: dict[str, Any] = {"scale": args.scale, "journal_lines": counts["account_move_line"],
                                  "lakehouse": ours, "spark_local2": spark}
        if spark:
            for p in ("bronze_to_silver", "silver_to_gold"):
                ours_transform = ours[p]["phases"]["transform"]
                result[f"speedup_{p}_transform"] = round(spark[p] / ours_transform, 2) if ours_transform else None
        if args.spark:
            duck, on_spark = ours["silver_to_gold"], ours["silver_to_gold_spark_phase"]
            result["spark_phase_vs_duckdb"] = {
                "same_gold": duck["hashes"] == on_spark["hashes"] and bool(duck["hashes"]),
                "transform_ratio": round(on_spark["phases"]["transform"] / duck["phases"]["transform"], 2)
                if duck["phases"].get("transform") else None,
                "wall_ratio": round(on_spark["wall_s"] / duck["wall_s"], 2) if duck["wall_s"] else None}
        print(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
