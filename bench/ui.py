"""Control Room benchmark: page times of the Runs list and the Run detail at 1M runs / 10M events.

    .venv/bin/python bench/ui.py [--runs 1000000] [--events-per-run 10] [--requests 60]

Seeds a fresh PostgreSQL database (``lakehouse_bench_<pid>`` on 127.0.0.1:5432, dropped at the end)
with ``--runs`` runs of 3 phases each and ``--events-per-run`` events per run, spread over the past
``runs * 5`` seconds, then times the pages in-process (the FastAPI app through Starlette's TestClient, logged
in with a session cookie: the server's own time without network). Figures per page: p50/p95/max of
``--requests`` requests after 5 warm-ups. Pages: the first Runs page, a filtered page (status,
pipeline, environment), a deep keyset page (90 % down the history), a Run detail, and the Overview.
Prints one JSON document on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

# bench/ holds queue.py: keep the folder from shadowing the standard library's ``queue`` while still
# finding _common next to this file.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE] + [_HERE]

from _common import backend, cli, log, machine, summary_ms

PIPELINES = ["odoo_ingest_bronze", "bronze_to_silver", "silver_to_gold", "revenue_marts", "adhoc"]


def seed(url: str, runs: int, events_per_run: int) -> dict[str, float]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    took: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as c:
        ws = c.execute("SELECT id FROM workspaces WHERE slug = 'default'").fetchone()[0]  # type: ignore[index]
        arr = "ARRAY[" + ",".join(f"'{p}'" for p in PIPELINES) + "]"
        steps = {
            "runs": f"""
                INSERT INTO runs (id, workspace_id, environment, spec_slug, git_sha, status, input_manifest,
                                  created_by, created_at, started_at, finished_at, last_seq, error)
                SELECT md5('r' || i)::uuid::text, {ws}, (ARRAY['dev','stage','prod'])[1 + i % 3],
                       ({arr})[1 + i % 5], 'abc1234',
                       CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'cancelled' ELSE 'succeeded' END,
                       '{{}}'::jsonb, 'bench', now() - make_interval(secs => ({runs} - i) * 5),
                       now() - make_interval(secs => ({runs} - i) * 5 - 1),
                       now() - make_interval(secs => ({runs} - i) * 5 - 4), {events_per_run},
                       CASE WHEN i % 50 = 0 THEN 'transform failed: division by zero' END
                FROM generate_series(1, {runs}) AS i""",
            "phases": f"""
                INSERT INTO phases (run_id, idx, name, type, capability, params, max_attempts, status, attempt,
                                    started_at, finished_at)
                SELECT md5('r' || i)::uuid::text, p, (ARRAY['ingest','transform','publish'])[p + 1], 'noop',
                       'noop', '{{}}'::jsonb, 3, 'succeeded', 1,
                       now() - make_interval(secs => ({runs} - i) * 5 - 1 - p),
                       now() - make_interval(secs => ({runs} - i) * 5 - 2 - p)
                FROM generate_series(1, {runs}) AS i, generate_series(0, 2) AS p""",
            "events": f"""
                INSERT INTO run_events (run_id, seq, event_id, type, phase, ts, level, message, payload)
                SELECT md5('r' || i)::uuid::text, s, md5('e' || i || '-' || s),
                       CASE WHEN s = 1 THEN 'RUN_CREATED' WHEN s = {events_per_run} THEN 'RUN_SUCCEEDED'
                            ELSE 'PHASE_LOG' END,
                       NULL, now() - make_interval(secs => ({runs} - i) * 5 - s * 0.3), 'info', 'event ' || s,
                       '{{}}'::jsonb
                FROM generate_series(1, {runs}) AS i, generate_series(1, {events_per_run}) AS s""",
        }
        for name, sql in steps.items():
            t = time.monotonic()
            c.execute(sql)
            took[name] = round(time.monotonic() - t, 1)
            log(f"seeded {name} in {took[name]} s")
        t = time.monotonic()
        c.execute("VACUUM ANALYZE")
        took["vacuum_analyze"] = round(time.monotonic() - t, 1)
    return took


def measure(client: Any, url: str, n: int) -> dict[str, Any]:
    for _ in range(5):
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200
    s = summary_ms(times)
    ms = sorted(v * 1000 for v in times)
    s["p95_ms"] = round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2)
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--events-per-run", type=int, default=10)
    ap.add_argument("--requests", type=int, default=60)
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": machine(), "runs": args.runs, "events": args.runs * args.events_per_run}
    with backend("postgres") as b:
        cli(b, "db", "upgrade")
        cli(b, "users", "create", "bench-admin", "--role", "admin", "--password-stdin", stdin="bench-admin-pw\n")
        out["seed_s"] = seed(b.database_url, args.runs, args.events_per_run)

        from fastapi.testclient import TestClient

        from lakehouse.api.app import create_app
        from lakehouse.services.context import open_context
        from lakehouse.settings import Settings

        ctx = open_context(Settings(home=b.home, database_url=b.database_url))
        client = TestClient(create_app(ctx, reaper=False))
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = client.post("/login", data={"name": "bench-admin", "password": "bench-admin-pw", "csrf_token": token},
                        follow_redirects=False)
        assert r.status_code == 303, r.text
        import psycopg

        with psycopg.connect(b.database_url.replace("postgresql+psycopg://", "postgresql://")) as c:
            deep = c.execute("SELECT created_at, id FROM runs ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                             (int(args.runs * 0.9),)).fetchone()
            detail = c.execute("SELECT id FROM runs ORDER BY created_at DESC OFFSET 1000 LIMIT 1").fetchone()
        assert deep and detail
        from urllib.parse import quote

        cursor = quote(f"{deep[0].isoformat()}~{deep[1]}")
        pages = {
            "runs_first_page": "/runs",
            "runs_filtered": "/runs?status=failed&pipeline=silver_to_gold&env=prod",
            "runs_deep_page": f"/runs?before={cursor}",
            "run_detail": f"/runs/{detail[0]}",
            "overview": "/",
        }
        out["pages"] = {}
        for name, url in pages.items():
            out["pages"][name] = measure(client, url, args.requests)
            log(f"{name}: p50 {out['pages'][name]['p50_ms']} ms, p95 {out['pages'][name]['p95_ms']} ms")
        client.close()
        ctx.db.dispose()
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
