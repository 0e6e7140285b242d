"""`lakehouse sql` against the SQL page: how long a query typed in a terminal takes, end to end.

    .venv/bin/python bench/cli_sql.py [--runs 7]

A fresh SQLite home with one gold table (1,000 rows) and a `lakehouse serve`; then, ``--runs`` times each:

- ``ui``: ``POST /api/sql`` from a warm HTTP client, what the SQL page's Run button waits for;
- ``cli_server``: the `lakehouse` executable with ``LAKEHOUSE_TOKEN`` set (it goes through the server);
- ``cli_stored``: the `lakehouse` executable after `lakehouse login` (no ``LAKEHOUSE_TOKEN``: the stored
  login in ``$XDG_CONFIG_HOME/lakehouse/credentials.json`` sends it through the server);
- ``cli_local``: the `lakehouse` executable with ``--local`` (it opens the catalog and DuckDB itself);
- ``cli_help``: ``lakehouse --help`` — the price of loading every command, for comparison.

Wall time (p50/min/max) and, for the subprocesses, CPU time (user + system, from ``getrusage``) — read the
CPU figures when the machine is shared: wall time there is mostly waiting for a core. One JSON document
on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE] + [_HERE]

import httpx
from _common import LAKEHOUSE, Procs, Server, backend, log, machine, pct, prepare

QUERY = "SELECT month, sum(amount) AS amount FROM gold.bench_revenue GROUP BY month ORDER BY month"


def _seed(env: dict[str, str]) -> None:
    code = ("import pyarrow as pa\n"
            "from lakehouse.lake.catalog import catalog_for\n"
            "from lakehouse.lake.tables import write_table\n"
            "from lakehouse.settings import Settings\n"
            "rows = 1000\n"
            "t = pa.table({'month': [f'2026-{1 + i % 12:02d}' for i in range(rows)],"
            " 'amount': [float(i) for i in range(rows)]})\n"
            "write_table(catalog_for(Settings()), 'gold', 'dev', 'bench_revenue', t)\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {r.stderr.strip()[-1000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _summary(walls: list[float], cpus: list[float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(walls), "wall_p50_ms": round(pct(walls, 50) * 1000, 1),
                           "wall_min_ms": round(min(walls) * 1000, 1), "wall_max_ms": round(max(walls) * 1000, 1)}
    if cpus:
        out["cpu_p50_ms"] = round(pct(cpus, 50) * 1000, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": machine(), "query": QUERY, "runs": args.runs}
    with backend("sqlite") as b:
        tokens = prepare(b)
        _seed(b.env)
        procs = Procs(b.home)
        try:
            server = Server(b, procs)
            env = {**b.env, "LAKEHOUSE_SERVER": server.base, "LAKEHOUSE_TOKEN": tokens["engineer"]}
            api = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {tokens['engineer']}"},
                               timeout=300)
            api.post("/api/sql", json={"sql": QUERY}).raise_for_status()  # the first query warms the pool
            ui = []
            for _ in range(args.runs):
                t = time.perf_counter()
                api.post("/api/sql", json={"sql": QUERY}).raise_for_status()
                ui.append(time.perf_counter() - t)
            result["ui"] = _summary(ui)
            log(f"ui: {result['ui']}")
            stored = {**b.env, "XDG_CONFIG_HOME": str(b.home / "xdg")}  # no LAKEHOUSE_TOKEN, no LAKEHOUSE_SERVER
            subprocess.run([LAKEHOUSE, "login", "--server", server.base, "--user", "bench-admin", "--password-stdin"],
                           env=stored, input="bench-admin-password\n", text=True, capture_output=True, check=True,
                           timeout=300)
            for name, cmd, e in (("cli_server", [LAKEHOUSE, "sql", QUERY], env),
                                 ("cli_stored", [LAKEHOUSE, "sql", QUERY], stored),
                                 ("cli_local", [LAKEHOUSE, "sql", "--local", QUERY], b.env),
                                 ("cli_help", [LAKEHOUSE, "--help"], b.env)):
                walls, cpus = [], []
                for _ in range(args.runs):
                    wall, cpu = _timed(cmd, e)
                    walls.append(wall)
                    cpus.append(cpu)
                result[name] = _summary(walls, cpus)
                log(f"{name}: {result[name]}")
            api.close()
            subprocess.run([LAKEHOUSE, "logout"], env=stored, capture_output=True, check=True, timeout=300)
        finally:
            procs.stop_all()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
