"""Attacks through the data plane: a run's phases must act only on the run's workspace and
environment (issue 10, items 1-3). Phases run through the real worker loop and handlers, speaking
HTTP to the app in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import runs, users
from tests.security.conftest import ADMIN, VICTIM_ROWS, Attack, run_of, work


def victim_rows(attack: Attack, workspace: str) -> list[dict[str, Any]]:
    catalog = catalog_for(attack.ctx.settings)
    table = lake_tables.read_table(catalog, "gold", "dev", "secret", workspace=workspace)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def transform_run(attack: Attack, who: str, workspace: str, sql: str, output: str = "gold.secret") -> dict[str, Any]:
    spec = {"name": "attack", "version": 1, "transforms": [{"name": "t", "sql": "t.sql", "output": output}]}
    return attack.run(who, workspace, [{"name": "transform", "type": "transform"},
                                       {"name": "publish", "type": "publish"}],
                      {"spec": spec, "sql": {"t": sql}})


def test_pipeline_run_in_beta_cannot_overwrite_another_workspaces_table(lake: Attack) -> None:
    run = transform_run(lake, "beta_engineer", "beta", "SELECT 'pwned' AS secret, 2 AS n")
    assert run["status_code"] == 201, run
    work(lake)
    assert run_of(lake, run["run_id"])["status"] == "succeeded"
    assert victim_rows(lake, "default") == VICTIM_ROWS.to_pylist()
    assert victim_rows(lake, "alpha") == VICTIM_ROWS.to_pylist()
    assert victim_rows(lake, "beta") == [{"secret": "pwned", "n": 2}]  # the run wrote its own workspace


def test_pipeline_run_in_beta_cannot_read_another_workspaces_rows(lake: Attack) -> None:
    run = transform_run(lake, "beta_engineer", "beta", "SELECT CAST(secret AS INTEGER) AS leak FROM gold.secret",
                        output="gold.leak")
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "failed"
    assert "victim-row-4711" not in str(final)
    assert "victim-row-4711" not in str(runs.read_events(lake.ctx, run["run_id"], SYSTEM))


def test_transform_cannot_read_another_workspaces_files_directly(lake: Attack) -> None:
    location = lake_tables.load(catalog_for(lake.ctx.settings), "gold", "dev", "secret", "alpha").location()
    run = transform_run(lake, "beta_engineer", "beta", f"SELECT * FROM read_parquet('{location}/data/*.parquet')",
                        output="gold.leak")
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "failed"
    assert "victim-row-4711" not in str(final)


def test_sql_phase_cannot_read_etc_passwd_or_the_secret_key(lake: Attack) -> None:
    key = Path(lake.ctx.settings.home) / "secret.key"
    key.write_text("the-fernet-key-of-every-connection")
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", f"SELECT content FROM read_text('{key}')"):
        run = lake.run("beta_engineer", "beta", [{"name": "q", "type": "sql", "params": {"sql": sql}}])
        assert run["status_code"] == 201
        work(lake)
        final = run_of(lake, run["run_id"])
        assert final["status"] == "failed", sql
        assert "root:" not in str(final) and "the-fernet-key" not in str(final)


def test_sql_phase_reads_its_own_workspace_only(lake: Attack) -> None:
    run = lake.run("alpha_engineer", "alpha", [{"name": "q", "type": "sql",
                                                "params": {"sql": "SELECT count(*) AS n FROM gold.secret"}}])
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "succeeded", final["error"]
    assert final["phases"][0]["output_manifest"]["outputs"]["result"]["rows"] == 1
    run = lake.run("beta_engineer", "beta", [{"name": "q", "type": "sql",
                                              "params": {"sql": "SELECT * FROM gold.secret"}}])
    work(lake)
    assert run_of(lake, run["run_id"])["status"] == "failed"  # beta has no gold.secret


def test_query_phase_params_workspace_cannot_pick_another_workspace(lake: Attack) -> None:
    run = lake.run("beta_engineer", "beta", [{"name": "q", "type": "query", "params": {
        "sql": "SELECT * FROM gold.secret", "workspace": "default"}}])
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "failed"
    assert "victim-row-4711" not in str(final)


def test_query_phase_runs_as_its_creator_in_the_runs_workspace(lake: Attack) -> None:
    run = lake.run("alpha_engineer", "alpha", [{"name": "q", "type": "query",
                                                "params": {"sql": "SELECT secret FROM gold.secret"}}])
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "succeeded", final["error"]
    history = lake.client.get("/api/queries", headers=lake.headers("alpha_engineer")).json()["queries"]
    mine = [q for q in history if q.get("run_id") == run["run_id"]]
    assert mine and mine[0]["user"] == "alpha_engineer"


def test_query_phase_of_a_creator_removed_from_the_workspace_is_refused(lake: Attack) -> None:
    run = lake.run("alpha_engineer", "alpha", [{"name": "q", "type": "query",
                                                "params": {"sql": "SELECT secret FROM gold.secret"}}])
    users.set_membership(lake.ctx, ADMIN, "alpha_engineer", "alpha", False)
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "failed"
    assert "creator_not_allowed" in (final["phases"][0]["error"] or "")


@pytest.mark.parametrize("target", ["os:system", "yaml:unsafe_load", "subprocess:run", "builtins:eval",
                                    "lakehouse.handlers.samples:_private", "lakehouse.handlers.samplesx:row_check"])
def test_python_phase_with_unregistered_callable_is_refused_at_creation(attack: Attack, target: str) -> None:
    run = attack.run("beta_engineer", "beta", [{"name": "p", "type": "python",
                                                "params": {"callable": target, "args": "id"}}])
    assert run["status_code"] == 422, run
    assert run["error"]["code"] == "python_not_allowed"


def test_python_transform_in_a_spec_with_unregistered_callable_is_refused(attack: Attack) -> None:
    spec = {"name": "x", "version": 1, "transforms": [{"name": "t", "python": "os:system", "output": "gold.x"}]}
    run = attack.run("beta_engineer", "beta", [{"name": "transform", "type": "transform"}], {"spec": spec})
    assert run["status_code"] == 422, run
    assert run["error"]["details"]["field"] == "input_manifest.spec.transforms[0].python"


def test_python_phase_with_registered_callable_is_accepted(attack: Attack) -> None:
    run = attack.run("beta_engineer", "beta", [{"name": "p", "type": "python", "params": {
        "callable": "lakehouse.handlers.samples:row_check", "args": {"min_rows": 0}}}])
    assert run["status_code"] == 201, run


def test_worker_refuses_unregistered_callable_even_if_the_server_let_it_through(lake: Attack) -> None:
    from lakehouse.handlers.python import load_callable
    from lakehouse.worker.context import PhaseError

    with pytest.raises(PhaseError, match="not registered"):
        load_callable("os:system")


@pytest.mark.parametrize("url", ["${LAKEHOUSE_DATABASE_URL}", "sqlite:///${LAKEHOUSE_HOME}/control.db",
                                 "${LAKEHOUSE_SECRET_KEY}"])
def test_pipeline_source_cannot_read_the_metadata_database(lake: Attack, url: str) -> None:
    spec = {"name": "steal", "version": 1, "sources": {"meta": {"kind": "sqlite", "url": url}},
            "ingest": {"source": "meta", "groups": {"g": ["users", "api_tokens", "connections"]}}}
    run = lake.run("beta_engineer", "beta", [{"name": "ingest", "type": "ingest", "params": {"group": "g"}}],
                   {"spec": spec})
    assert run["status_code"] == 201
    work(lake)
    final = run_of(lake, run["run_id"])
    assert final["status"] == "failed"
    catalog = catalog_for(lake.ctx.settings)
    assert not lake_tables.table_exists(catalog, "bronze", "dev", "api_tokens", "beta")
    assert not lake_tables.table_exists(catalog, "bronze", "dev", "users", "beta")


def test_staged_path_outside_the_runs_staging_folder_is_refused(lake: Attack, tmp_path: Path) -> None:
    from lakehouse.handlers.pipeline import _staged
    from lakehouse.worker.context import PhaseContext, PhaseError

    ctx = PhaseContext(run_id="r1", phase="publish", phase_type="publish", attempt=1, params={}, input_manifest={},
                       previous_outputs={"transform": {"outputs": {"gold.x": {"staged": str(tmp_path / "x.parquet")}}}},
                       environment="dev", spec_slug="s", git_sha="g", workspace="beta")
    with pytest.raises(PhaseError, match="outside this run's staging folder"):
        _staged(ctx, lake.ctx.settings)


@pytest.mark.parametrize("path", ["/api/queries", "/api/catalog/tables", "/api/catalog/namespaces",
                                  "/api/lineage?table=gold.secret"])
def test_executor_token_cannot_read_query_history_catalog_or_lineage(attack: Attack, path: str) -> None:
    r = attack.client.get(path, headers=attack.headers("executor"))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"


def test_run_with_an_invalid_inline_spec_is_refused_at_creation(attack: Attack) -> None:
    spec = {"name": "x", "version": 1, "transforms": [{"name": "t", "sql": "t.sql", "output": "public.t"}]}
    run = attack.run("beta_engineer", "beta", [{"name": "transform", "type": "transform"}], {"spec": spec})
    assert run["status_code"] == 422, run
    assert run["error"]["code"] == "invalid_spec"
    assert run["error"]["details"]["field"].startswith("input_manifest.spec.transforms.0")


def test_python_phase_follows_the_workers_own_module_list(lake: Attack) -> None:
    """The worker's settings (built once at its edge) decide which modules may run, phase by phase:
    a sample callable runs under the default list and is refused under a list without it."""
    from types import SimpleNamespace

    from lakehouse.handlers.python import run_python
    from lakehouse.worker.context import PhaseContext, PhaseError

    def ctx(modules: list[str]) -> PhaseContext:
        return PhaseContext(run_id="r", phase="p", phase_type="python", attempt=1,
                            params={"callable": "lakehouse.handlers.samples:row_check", "args": {"min_rows": 0}},
                            input_manifest={}, previous_outputs={}, environment="dev", spec_slug="s",
                            git_sha="0" * 40, settings=SimpleNamespace(python_modules=modules))

    assert isinstance(run_python(ctx(["lakehouse.handlers.samples"])), dict)
    with pytest.raises(PhaseError, match="not registered"):
        run_python(ctx(["somebody_else.tasks"]))
