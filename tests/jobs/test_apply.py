"""GitOps: apply a folder of job files; the plan is exact and a second apply changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lakehouse.domain.principal import Principal
from lakehouse.services import jobs
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from tests.clock_support import Clock
from tests.jobs.conftest import sql_job


def _write(folder: Path, doc: dict[str, object]) -> None:
    (folder / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc))


def _plan(ctx: Context, admin: Principal, folder: Path, prune: bool = False) -> list[tuple[str, str]]:
    return [(i.name, i.action) for i in jobs.plan(ctx, admin, "default", [folder], prune=prune)]


def test_apply_is_idempotent_and_its_plan_exact(ctx: Context, clock: Clock, admin: Principal,
                                                tmp_path: Path) -> None:
    _write(tmp_path, {**sql_job("report"), "triggers": [{"on_success_of": "load"}]})
    _write(tmp_path, sql_job("load"))
    (tmp_path / "q.sql").write_text("SELECT 42 AS answer")
    _write(tmp_path, {"name": "answer", "type": "sql", "sql": {"query_file": "q.sql"}})
    plan = _plan(ctx, admin, tmp_path)
    assert plan == [("answer", "create"), ("load", "create"), ("report", "create")]  # upstream first
    jobs.apply(ctx, admin, "default", jobs.plan(ctx, admin, "default", [tmp_path]))
    assert jobs.definition_of(ctx, admin, "default", "answer").sql.query == "SELECT 42 AS answer"  # type: ignore[union-attr]
    assert _plan(ctx, admin, tmp_path) == [("answer", "unchanged"), ("load", "unchanged"), ("report", "unchanged")]
    jobs.apply(ctx, admin, "default", jobs.plan(ctx, admin, "default", [tmp_path]))
    assert {j["name"]: j["version"] for j in jobs.list_jobs(ctx, admin)} == {"answer": 1, "load": 1, "report": 1}
    _write(tmp_path, sql_job("load", description="changed"))
    (tmp_path / "answer.yaml").unlink()
    items = jobs.plan(ctx, admin, "default", [tmp_path], prune=True)
    assert [(i.name, i.action) for i in items] == [("load", "update"), ("report", "unchanged"), ("answer", "archive")]
    assert "+description: changed" in items[0].diff
    jobs.apply(ctx, admin, "default", items)
    assert {j["name"]: j["version"] for j in jobs.list_jobs(ctx, admin)} == {"load": 2, "report": 1}


def test_an_invalid_file_applies_nothing(ctx: Context, clock: Clock, admin: Principal, tmp_path: Path) -> None:
    _write(tmp_path, sql_job("good"))
    _write(tmp_path, {**sql_job("bad"), "schedule": {"cron": "0 25 * * *"}})
    items = jobs.plan(ctx, admin, "default", [tmp_path])
    assert [(i.name, i.action) for i in items] == [("bad", "invalid"), ("good", "create")]
    with pytest.raises(InvalidInput):
        jobs.apply(ctx, admin, "default", items)
    assert jobs.list_jobs(ctx, admin) == []


def test_cli_apply_dry_run_and_one_line_errors(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli.main import app

    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    _write(tmp_path, sql_job("daily"))
    runner = CliRunner()
    dry = runner.invoke(app, ["jobs", "apply", str(tmp_path), "--dry-run"])
    assert dry.exit_code == 0 and "+ create daily" in dry.output and "dry run" in dry.output
    assert runner.invoke(app, ["jobs", "list"]).output.count("daily") == 0
    assert runner.invoke(app, ["jobs", "apply", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["jobs", "apply", str(tmp_path)])
    assert "unchanged daily" in again.output and "0 to create, 0 to update" in again.output
    bad = runner.invoke(app, ["jobs", "run", "daily", "--param", "limit=lots"])
    assert bad.exit_code == 1 and "params.limit" in bad.output and len(bad.output.strip().splitlines()) == 1
    ok = runner.invoke(app, ["jobs", "run", "daily", "--param", "limit=5"])
    assert ok.exit_code == 0 and "v1" in ok.output
    show = runner.invoke(app, ["jobs", "show", "daily"])
    assert show.exit_code == 0 and "version 1" in show.output
    bf = runner.invoke(app, ["backfill", "daily", "--from", "2024-01-01", "--to", "2024-01-05", "--detach"])
    assert bf.exit_code == 0 and "5 runs" in bf.output
