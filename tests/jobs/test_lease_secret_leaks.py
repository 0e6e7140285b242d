"""The leak scan for secrets handed to a worker for a lease (``POST /ops/runs/{id}/connections/{name}``),
with real processes: a `lakehouse serve` and a `lakehouse worker` run two sql jobs on a PostgreSQL
connection with a known password (one publishing to a lake table, one returning its rows as an
artifact). Then the password must appear nowhere but in the connection's encrypted column: no column
of any table (every text and JSON value, both backends), no line of the server's or the worker's log,
no run event, no artifact or lake file, no API answer and no page of the Control Room.

(tests/web/test_connections.py scans the same places for secrets typed into the connection form; this
scan adds the path where a worker receives the secret and uses it.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from lakehouse.services import auth
from lakehouse.services.context import Context
from lakehouse.store.tables import connections as connections_table
from lakehouse.store.tables import metadata
from tests.e2e.harness import Server, running_server, spawn_worker, stop, wait_for
from tests.jobs.pg_source import pg_source  # noqa: F401  (a session fixture)

pytestmark = pytest.mark.slow
SECRET = "lease-secret-9fQ2-never-anywhere"
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[dict[str, Any]]:
    auth.create_user(ctx, "ada", "admin", PASSWORD)
    auth.create_user(ctx, "bot", "executor", None)
    executor = auth.create_token(ctx, "bot")
    api = auth.create_token(ctx, "ada")
    logs = tmp_path / "logs"
    logs.mkdir()
    with running_server(ctx.settings.home, ctx.settings.database_url, secret_key=ctx.settings.secret_key) as server:
        worker = spawn_worker(server, executor, "w-leak", logs)
        try:
            yield {"server": server, "api": api, "logs": logs}
        finally:
            stop([worker])


def _browser(server: Server) -> tuple[httpx.Client, str]:
    web = httpx.Client(base_url=server.base, timeout=30)
    token = CSRF_RE.search(web.get("/login").text)
    assert token
    r = web.post("/login", data={"name": "ada", "password": PASSWORD, "csrf_token": token.group(1)})
    assert r.status_code in (302, 303), r.text
    page = web.get("/connections")
    csrf = CSRF_RE.search(page.text)
    assert csrf, page.text
    return web, csrf.group(1)


def _wait_finished(api: httpx.Client, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = api.get(f"/ops/runs/{run_id}").json()
        return run if run["status"] in FINISHED else None

    return wait_for(done, 120, 0.3, f"run {run_id} to finish")  # type: ignore[no-any-return]


def test_a_lease_secret_is_nowhere_but_its_encrypted_column(ctx: Context, stack: dict[str, Any],
                                                            pg_source: dict[str, Any]) -> None:  # noqa: F811
    server: Server = stack["server"]
    web, csrf = _browser(server)
    api = httpx.Client(base_url=server.base, timeout=30, headers={"Authorization": f"Bearer {stack['api']}"})
    # the connection, typed into the form with its password
    fields = {f"f_{k}": v for k, v in pg_source["config"].items()}
    r = web.post("/connections", data={"csrf_token": csrf, "type": "postgres", "name": "src_pg",
                                       "workspace": "default", "environment": "dev", **fields,
                                       "f_password": SECRET})
    assert r.status_code == 303, r.text
    conn_id = int(r.headers["location"].rsplit("/", 1)[1])
    # two jobs reading through it: one publishes a lake table, one returns its rows as an artifact
    query = "SELECT greeting || ' ' || who AS line, current_user AS who_ran FROM people WHERE who = {{ who }}"
    params = {"who": {"type": "string", "default": "world"}}
    run_ids = []
    for name, sql in (("to_lake", {"target": "gold.lines", "mode": "overwrite"}), ("to_artifact", {})):
        definition = {"name": name, "type": "sql", "params": params,
                      "sql": {"query": query, "connection": "src_pg", **sql}}
        assert api.post("/api/jobs", json={"workspace": "default", "definition": definition}).status_code == 201
        run = api.post(f"/api/jobs/{name}/runs?workspace=default", json={"params": {"who": "lakehouse"}})
        assert run.status_code == 201, run.text
        run_ids.append(run.json()["run_id"])
    answers: list[str] = []
    for run_id in run_ids:
        final = _wait_finished(api, run_id)
        assert final["status"] == "succeeded", [p.get("error") for p in final["phases"]]
        events = api.get(f"/ops/runs/{run_id}/events").json()["events"]
        assert any(e["type"] == "CONNECTION_USED" for e in events), "the worker was handed the secret"
        answers += [api.get(f"/ops/runs/{run_id}").text, api.get(f"/ops/runs/{run_id}/events").text,
                    api.get(f"/ops/runs/{run_id}/artifacts").text]
        for page in (f"/runs/{run_id}", f"/runs/{run_id}?tab=events", f"/runs/{run_id}?tab=outputs"):
            answers.append(web.get(page).text)
    artifact = [a for a in api.get(f"/ops/runs/{run_ids[1]}/artifacts").json()["artifacts"]]
    assert artifact and "hi lakehouse" in str(artifact[0].get("metadata")), artifact
    for name in ("to_lake", "to_artifact"):
        answers += [api.get(f"/api/jobs/{name}?workspace=default").text,
                    api.get(f"/api/jobs/{name}/runs?workspace=default").text,
                    api.get(f"/api/jobs/{name}/versions?workspace=default").text,
                    web.get(f"/jobs/default/{name}").text, web.get(f"/jobs/default/{name}?tab=versions").text]
    answers += [web.get(p).text for p in ("/", "/runs", "/jobs", "/connections", f"/connections/{conn_id}",
                                          "/audit", "/executors")]
    answers.append(api.get("/api/jobs").text)

    # the scan
    for text in answers:
        assert SECRET not in text
    for log in [*stack["logs"].glob("*.log"), *ctx.settings.home.glob("server-*.log")]:
        assert SECRET not in log.read_text(errors="replace"), f"{log.name} holds the secret"
    with ctx.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for col, value in row.items():
                    if table.name == "connections" and col == "secrets_enc":
                        continue
                    assert SECRET not in str(value), f"{table.name}.{col} holds the secret"
        stored: str | None = conn.execute(select(connections_table.c.secrets_enc)
                              .where(connections_table.c.id == conn_id)).scalar_one()
    assert stored and stored.startswith("gAAAAA") and SECRET not in stored  # a Fernet token
    scanned = 0
    for folder in {ctx.settings.artifacts_dir, ctx.settings.home}:
        for f in Path(folder).rglob("*"):
            if f.is_file():  # artifacts, the lake's files, staged files, a SQLite metadata file
                assert SECRET.encode() not in f.read_bytes(), f"{f} holds the secret"
                scanned += 1
    assert scanned > 0
