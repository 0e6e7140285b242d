"""The Iceberg REST catalog (/iceberg) under 8 concurrent pyiceberg clients, on PostgreSQL.

    .venv/bin/python bench/iceberg_rest.py [--clients 8] [--ops 60] [--backend postgres]

Starts ``lakehouse serve`` on a fresh PostgreSQL metadata database (a local warehouse), creates one
table per client in ``bronze_dev`` through the REST catalog, then runs, with ``--clients`` client
processes at once (each its own ``pyiceberg.catalog.rest.RestCatalog``):

* ``load_1_client`` / ``commit_1_client``: the same calls from one client alone (the baseline);
* ``load``: ``load_table`` (GET …/tables/{t}: the catalog row, the metadata file, the answer);
* ``commit``: a metadata commit on the client's own table (``set_properties`` in a transaction: one
  POST …/tables/{t} with requirements, a new metadata file and the compare-and-swap);
* ``commit_same_table``: the same, all clients on ONE table (swaps lost to each other are computed
  again on the server; none may fail);
* ``append``: ``table.append`` of 100 rows (the client writes Parquet and manifests, then commits).

Prints one JSON document on stdout (latencies per call: p50/p99 in ms; throughput: calls/s over the
phase's wall time) and progress on stderr.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE] + [_HERE]

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

from _common import Procs, Server, backend, code_info, log, machine, prepare, summary_ms


def _catalog(uri: str, token: str) -> Any:
    from pyiceberg.catalog.rest import RestCatalog

    return RestCatalog("bench", uri=uri, token=token)


def _rows(n: int, start: int = 0) -> Any:
    import pyarrow as pa

    return pa.table({"id": pa.array(range(start, start + n), pa.int64()), "tag": pa.array(["b"] * n, pa.string())})


def _client(args: tuple[str, str, str, int, str, Any]) -> tuple[list[tuple[float, float]], int]:
    """One client process: ``ops`` calls of one kind; (start, end) monotonic times per call, and how
    many commits failed with CommitFailedException."""
    from pyiceberg.exceptions import CommitFailedException

    uri, token, phase, ops, table_name, barrier = args
    cat = _catalog(uri, token)
    table = cat.load_table(table_name)
    barrier.wait()
    spans: list[tuple[float, float]] = []
    failed = 0
    for i in range(ops):
        if phase == "commit_same_table":
            table = cat.load_table(table_name)  # not timed: the commit alone is
        t0 = time.monotonic()
        try:
            if phase == "load":
                cat.load_table(table_name)
            elif phase in ("commit", "commit_same_table"):
                with table.transaction() as tx:
                    tx.set_properties({f"bench.{os.getpid()}.{i}": "x"})
            elif phase == "append":
                table.append(_rows(100, i * 100))
        except CommitFailedException:
            failed += 1
        spans.append((t0, time.monotonic()))
    return spans, failed


def _phase(uri: str, token: str, phase: str, clients: int, ops: int, tables: list[str]) -> dict[str, Any]:
    with mp.Manager() as manager:
        barrier = manager.Barrier(clients)
        with mp.get_context("fork").Pool(clients) as pool:
            results = pool.map(_client, [(uri, token, phase, ops, tables[i % len(tables)], barrier)
                                         for i in range(clients)])
    spans = [s for r, _ in results for s in r]
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    out = {"clients": clients, "calls": len(spans), "wall_s": round(wall, 3),
           "calls_per_s": round(len(spans) / wall, 1), "commit_failed": sum(f for _, f in results),
           **summary_ms([e - s for s, e in spans])}
    log(f"  {phase}: {out['calls']} calls, {out['calls_per_s']}/s, p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--ops", type=int, default=60, help="calls per client and phase")
    ap.add_argument("--appends", type=int, default=15, help="appends per client")
    ap.add_argument("--backend", default="postgres", choices=("postgres", "sqlite"))
    args = ap.parse_args()
    report: dict[str, Any] = {"benchmark": "iceberg_rest", "machine": machine(), "code": code_info(None),
                              "backend": args.backend, "clients": args.clients}
    with backend(args.backend) as b:
        procs = Procs(b.home)
        try:
            token = prepare(b)["engineer"]
            server = Server(b, procs)
            uri = f"{server.base}/iceberg"
            from pyiceberg.schema import Schema
            from pyiceberg.types import LongType, NestedField, StringType

            schema = Schema(NestedField(1, "id", LongType(), required=False),
                            NestedField(2, "tag", StringType(), required=False))
            cat = _catalog(uri, token)
            tables = [f"bronze_dev.bench_{i}" for i in range(args.clients)]
            for name in tables:
                cat.create_table(name, schema).append(_rows(1000))
            log(f"[{b.name}] {len(tables)} tables created; {args.clients} clients")
            report["load_1_client"] = _phase(uri, token, "load", 1, args.ops, tables)
            report["commit_1_client"] = _phase(uri, token, "commit", 1, args.ops, tables)
            report["load"] = _phase(uri, token, "load", args.clients, args.ops, tables)
            report["commit"] = _phase(uri, token, "commit", args.clients, args.ops, tables)
            report["commit_same_table"] = _phase(uri, token, "commit_same_table", args.clients,
                                                 max(1, args.ops // 3), tables[:1])
            report["append"] = _phase(uri, token, "append", args.clients, args.appends, tables)
            same = cat.load_table(tables[0]).metadata.properties
            # every successful commit's property is there: none was lost to a concurrent one
            report["commit_same_table"]["properties_kept"] = sum(1 for k in same if k.startswith("bench."))
        finally:
            procs.stop_all()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
