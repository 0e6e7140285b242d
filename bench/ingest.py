"""Postgres → bronze Iceberg ingestion throughput, side by side with the ceiling and with dlt.

    .venv/bin/python bench/ingest.py [--rows 2000000] [--skip-dlt]

Builds a PostgreSQL database with an Odoo-shaped ``account_move_line`` of ``--rows`` rows (seeded
with ``lakehouse odoo seed`` at a small scale, then multiplied server-side with generate_series, so
the columns, types and unconstrained ``numeric`` money columns are Odoo's), then measures, in one
run on the same table:

* the ceiling: ``psql -c "\\copy (SELECT * FROM account_move_line) TO /dev/null"``;
* ours: the ingest read path (``lakehouse.connectors.sources``, exact decimals) → one atomic Iceberg
  commit in a local warehouse (``lakehouse.lake.tables.write_table``), end to end;
* dlt ``sql_database`` (pyarrow backend, the default, and connectorx) to local Parquet files, in a
  separate virtualenv (``bench/.venv-dlt``; dlt is a bench-only dependency, never installed in .venv).

Prints one JSON document on stdout (figures in rows/s) and a summary on stderr.
"""

from __future__ import annotations

import sys

sys.path[:] = [p for p in sys.path if not p.endswith("/bench")]

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = os.environ.get("LAKEHOUSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HERE = Path(__file__).parent
DLT_VENV = HERE / ".venv-dlt"
DLT_PINS = ["dlt[parquet]==1.31.0", "sqlalchemy==2.1.9", "connectorx==0.4.6", "psycopg2-binary==2.9.13",
            "pyarrow==26.0.1"]

DLT_SCRIPT = r"""
import sys, time, dlt
from dlt.sources.sql_database import sql_table
url, backend, out = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
p = dlt.pipeline(pipeline_name="bench_" + backend, destination=dlt.destinations.filesystem(out),
                 dataset_name="bronze", pipelines_dir=out + "/_pipelines")
src = sql_table(credentials=url, table="account_move_line", backend=backend, chunk_size=100000)
info = p.run(src, loader_file_format="parquet")
print(time.perf_counter() - t0)
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_source(rows: int) -> str:
    from lakehouse.connectors.odoo_seed import seed

    name = f"lakehouse_bench_ingest_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    seed(url, 20)
    with psycopg.connect(url, autocommit=True) as conn:
        base = conn.execute("SELECT count(*), max(id) FROM account_move_line").fetchone()
        assert base is not None
        n, top = base
        copies = max(0, -(-rows // n) - 1)
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'account_move_line' "
            "AND column_name <> 'id' ORDER BY ordinal_position")]
        col_list = ", ".join(f'"{c}"' for c in cols)
        select_list = ", ".join(f'l."{c}"' for c in cols)
        log(f"multiplying {n:,} seeded lines x {copies + 1} …")
        conn.execute(f"INSERT INTO account_move_line (id, {col_list}) SELECT l.id + g * {top}, {select_list} "
                     f"FROM account_move_line l, generate_series(1, {copies}) g")
        conn.execute(f"DELETE FROM account_move_line WHERE id > (SELECT id FROM account_move_line ORDER BY id "
                     f"OFFSET {rows - 1} LIMIT 1)")
        # an Odoo table is appended in id order; keep the multiplied copy in that physical order too
        pkey = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'account_move_line'::regclass "
                            "AND contype = 'p'").fetchone()
        if pkey:
            conn.execute(f'CLUSTER account_move_line USING "{pkey[0]}"')
        conn.execute("VACUUM ANALYZE account_move_line")
        total = conn.execute("SELECT count(*) FROM account_move_line").fetchone()[0]  # type: ignore[index]
    log(f"source: {total:,} rows in account_move_line ({url})")
    return url


def ceiling(url: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["psql", url, "-qc", r"\copy (SELECT * FROM account_move_line) TO /dev/null"], check=True)
    return time.perf_counter() - t0


def ours(url: str, rows: int) -> dict[str, float]:
    from lakehouse.connectors.sources import open_source
    from lakehouse.lake.catalog import open_catalog
    from lakehouse.lake.tables import write_table

    with tempfile.TemporaryDirectory() as tmp:
        catalog = open_catalog(f"sqlite:///{tmp}/catalog.db", f"{tmp}/warehouse")
        t0 = time.perf_counter()
        with open_source(url) as src:
            data = src.read_table("account_move_line")
        t1 = time.perf_counter()
        write_table(catalog, "bronze", "dev", "account_move_line", data)
        t2 = time.perf_counter()
        decimal_ok = str(data.schema.field("balance").type).startswith("decimal")
    assert data.num_rows == rows, data.num_rows
    return {"read_s": t1 - t0, "commit_s": t2 - t1, "total_s": t2 - t0, "exact_decimals": decimal_ok}


def dlt_run(url: str, backend: str) -> float | None:
    py = DLT_VENV / "bin" / "python"
    if not py.exists():
        log("creating bench/.venv-dlt for dlt (bench-only) …")
        subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *DLT_PINS], check=True)
    with tempfile.TemporaryDirectory() as out:
        dsn = url.replace("postgresql://", "postgresql+psycopg2://", 1)
        res = subprocess.run([str(py), "-c", DLT_SCRIPT, dsn, backend, out], capture_output=True, text=True,
                             env={**os.environ, "RUNTIME__LOG_LEVEL": "WARNING"})
        if res.returncode != 0:
            log(f"dlt {backend} failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else '?'}")
            return None
        return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--skip-dlt", action="store_true")
    args = ap.parse_args()
    url = make_source(args.rows)
    try:
        ceil_s = ceiling(url)
        log(f"psql \\copy: {args.rows / ceil_s:,.0f} rows/s")
        our = ours(url, args.rows)
        log(f"lakehouse ingest → Iceberg: {args.rows / our['total_s']:,.0f} rows/s "
            f"(read {args.rows / our['read_s']:,.0f} rows/s, commit {our['commit_s']:.2f} s)")
        dlt_default = dlt_cx = None
        if not args.skip_dlt:
            dlt_default = dlt_run(url, "pyarrow")
            dlt_cx = dlt_run(url, "connectorx")
        figures = {
            "rows": args.rows,
            "psql_copy_rows_per_s": round(args.rows / ceil_s),
            "lakehouse_rows_per_s": round(args.rows / our["total_s"]),
            "lakehouse_read_rows_per_s": round(args.rows / our["read_s"]),
            "lakehouse_commit_s": round(our["commit_s"], 3),
            "exact_decimals": our["exact_decimals"],
            "dlt_pyarrow_rows_per_s": round(args.rows / dlt_default) if dlt_default else None,
            "dlt_connectorx_rows_per_s": round(args.rows / dlt_cx) if dlt_cx else None,
        }
        figures["vs_ceiling"] = round(figures["lakehouse_rows_per_s"] / figures["psql_copy_rows_per_s"], 2)
        if figures["dlt_pyarrow_rows_per_s"]:
            figures["vs_dlt_default"] = round(figures["lakehouse_rows_per_s"] / figures["dlt_pyarrow_rows_per_s"], 2)
        print(json.dumps(figures, indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
