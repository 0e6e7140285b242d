"""Migration 0015 backfills which workspace may reference each stored blob (issue #10): the workspace of
every run with an artifact naming it, and the workspace of every live stored query result."""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, select

from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import runs, workspaces
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store import artifacts as artifact_rows
from lakehouse.store import sql_history
from lakehouse.store.migrations import config, current, upgrade
from lakehouse.store.tables import blob_owners


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


STORED, EXTERNAL, RESULT, EXPIRED, SHARED = (_sha(x) for x in ("stored", "external", "result", "expired", "shared"))


def test_0015_backfills_owners_from_artifacts_and_live_query_results(db_url: str, tmp_path: Path) -> None:
    ctx = open_context(Settings(home=tmp_path / "home", database_url=db_url))
    try:
        alpha, beta = workspaces.create(ctx, "alpha"), workspaces.create(ctx, "beta")

        def run(ws: str) -> str:
            r, _ = runs.create_run(ctx, RunRequest(spec_slug="s", git_sha="abc123", workspace=ws,
                                                   phases=[PhaseSpec(name="p", type="noop")]), SYSTEM)
            return str(r["run_id"])

        first_alpha, second_alpha, beta_run = run("alpha"), run("alpha"), run("beta")
        now = ctx.clock()
        with ctx.db.write() as conn:
            for sha in (STORED, RESULT, EXPIRED, SHARED):
                artifact_rows.remember_blob(conn, sha, 3, f"file:///blobs/{sha}", now)

            def artifact(run_id: str, name: str, sha: str, uri: str | None = None) -> None:
                artifact_rows.insert(conn, run_id=run_id, phase="p", name=name, sha256=sha, size_bytes=3,
                                     media_type="text/plain", uri=uri, metadata={}, now=now)

            artifact(first_alpha, "a", STORED)
            artifact(second_alpha, "a", STORED)  # the same workspace twice: one owner row, the first run
            artifact(beta_run, "shared", SHARED)
            artifact(beta_run, "ref", EXTERNAL, uri="s3://elsewhere/x")  # never stored: no owner

            def query(ws_id: int, sha: str) -> int:
                return sql_history.insert_query(
                    conn, workspace_id=ws_id, environment="dev", user_name="a", engine="duckdb", sql_text="SELECT 1",
                    status="succeeded", error=None, started_at=now, duration_ms=1.0, rows=1, snapshot_ids=None,
                    result_sha256=sha, result_bytes=3, run_id=None)

            query(alpha, RESULT)
            query(alpha, RESULT)  # twice: one owner row
            query(alpha, SHARED)  # alpha produced what beta's artifact names too
            query(beta, STORED)  # beta produced what alpha uploaded: its own result, beta's too
            sql_history.expire_results(conn, [query(beta, EXPIRED)], now)  # deleted result: nobody's
    finally:
        ctx.db.dispose()
    command.downgrade(config(db_url), "0014")
    try:
        assert current(db_url) == "0014"
    finally:
        upgrade(db_url)  # back to head (whatever happens: the PostgreSQL database is the session's)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            owners = {(r.workspace_id, r.sha256): r.run_id for r in conn.execute(select(blob_owners))}
    finally:
        engine.dispose()
    assert owners == {(alpha, STORED): first_alpha, (beta, SHARED): beta_run, (alpha, RESULT): None,
                      (alpha, SHARED): None, (beta, STORED): None}
