"""Issue 11, the CLI's papercuts: the installed command in hints, grammar, short run ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.cli.demo import GOLD_PREVIEW, installed_command
from lakehouse.services import auth
from lakehouse.services.context import Context


def test_hints_use_the_command_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "lakehouse"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert installed_command(str(exe), cwd=tmp_path) == ".venv/bin/lakehouse"  # not activated
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert installed_command(str(exe), cwd=tmp_path) == "lakehouse"  # an activated venv


def test_demo_prints_gold_tables_as_they_are() -> None:
    assert all(t.startswith("gold.") for t in GOLD_PREVIEW)  # SELECT * of each: the real column names


def test_demo_source_appears_as_a_connection_once(ctx: Context) -> None:
    from lakehouse.cli.demo import register_demo_connection
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import connections

    path = ctx.settings.home / "demo" / "odoo.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    register_demo_connection(ctx, path)
    register_demo_connection(ctx, path)
    found = [c for c in connections.list_connections(ctx, SYSTEM, "dev") if c["name"] == "odoo-demo"]
    assert len(found) == 1 and found[0]["type"] == "sqlite" and found[0]["config"]["path"] == str(path)


def test_lakehouse_up_reuses_its_executor_token(ctx: Context) -> None:
    from lakehouse.cli.server import LOCAL_EXECUTOR, executor_token
    from lakehouse.services import auth

    first = executor_token(ctx)
    assert executor_token(ctx) == first  # the second start reuses it
    assert (ctx.settings.home / "executor.token").stat().st_mode & 0o777 == 0o600
    auth.revoke_tokens(ctx, LOCAL_EXECUTOR)
    again = executor_token(ctx)  # a revoked token is replaced
    assert again != first and auth.authenticate_token(ctx, again).role == "executor"


def test_ids_and_names_are_whole_in_80_columns(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli.common import console
    from lakehouse.cli.main import app
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.domain.runs import RunRequest
    from lakehouse.services import jobs, runs

    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setattr(console, "width", 80)
    long = "odoo_ingest_bronze_invoices"
    made = [runs.create_run(ctx, RunRequest(spec_slug=long, git_sha="0123456789abcdef0123", environment="prod",
                                            phases=[{"name": "ingest_masterdata_and_more", "type": "noop"}]),
                            SYSTEM)[0]["run_id"] for _ in range(3)]
    jobs.save(ctx, SYSTEM, "default", {"name": "orders_daily_per_company_and_country", "type": "sql",
                                       "sql": {"query": "SELECT 1 AS n"}}, mode="create")
    cli = CliRunner()
    listing = cli.invoke(app, ["runs", "list"])
    assert listing.exit_code == 0, listing.output
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80
    for run_id in made:
        assert run_id[:8] in listing.stdout  # the short id, whole, as `runs show` takes it
    assert long in listing.stdout and "queued" in listing.stdout  # the name and the status whole too
    shown = cli.invoke(app, ["runs", "show", made[0][:8]])
    assert shown.exit_code == 0, shown.output
    assert made[0] in shown.stdout and "ingest_masterdata_and_more" in shown.stdout and "queued" in shown.stdout
    job_list = cli.invoke(app, ["jobs", "list"])
    assert job_list.exit_code == 0, job_list.output
    assert "orders_daily_per_company_and_country" in job_list.stdout


def test_up_logs_readable_lines_on_a_terminal_and_json_otherwise(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import io
    import json
    import logging
    import sys

    from lakehouse.cli.common import setup_logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.delenv("LAKEHOUSE_LOG_FORMAT", raising=False)
    lines = {}
    try:
        for name, stream, fmt in (("tty", Terminal(), None), ("pipe", io.StringIO(), None),
                                  ("tty-json", Terminal(), "json"), ("pipe-text", io.StringIO(), "text")):
            monkeypatch.setattr(sys, "stderr", stream)
            setup_logging("INFO", fmt)
            logging.getLogger("lakehouse.cli").info("\x1b[1mserver started\x1b[0m", extra={"port": 8000})
            lines[name] = stream.getvalue().strip()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert "INFO" in lines["tty"] and "lakehouse.cli: " in lines["tty"] and "port=8000" in lines["tty"]
    assert not lines["tty"].startswith("{") and not lines["pipe-text"].startswith("{")
    for name in ("pipe", "tty-json"):
        doc = json.loads(lines[name])
        assert doc["message"] == "server started" and doc["port"] == 8000 and "\x1b" not in lines[name]


def test_sql_goes_through_the_running_server_when_it_has_a_token(ctx: Context, admin_token: str, app,  # type: ignore[no-untyped-def]
                                                                 monkeypatch) -> None:
    """`lakehouse sql` with LAKEHOUSE_TOKEN asks the server (its warm pool; the query lands in the token
    user's history) and prints what the local path prints; without a server it answers locally."""
    import pyarrow as pa
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from lakehouse.cli import sql_server
    from lakehouse.cli.main import app as cli_app
    from lakehouse.lake.catalog import catalog_for
    from lakehouse.lake.tables import write_table
    from lakehouse.services import sql as sql_service

    write_table(catalog_for(ctx.settings), "gold", "dev", "revenue",
                pa.table({"month": ["2026-01", "2026-02"], "amount": [10.5, None]}))
    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", ctx.settings.warehouse)
    monkeypatch.setenv("LAKEHOUSE_SERVER", "http://lakehouse.test")
    server = TestClient(app)
    calls: list[str] = []

    def post(url: str, body: dict[str, object], token: str, timeout_s: float) -> tuple[int, bytes]:
        calls.append(url)
        answer = server.post(url.removeprefix("http://lakehouse.test"), json=body,
                             headers={"Authorization": f"Bearer {token}"})
        return answer.status_code, answer.content

    monkeypatch.setattr(sql_server, "post", post)
    cli = CliRunner()
    query = "SELECT * FROM gold.revenue ORDER BY month"
    local = cli.invoke(cli_app, ["sql", query])
    assert local.exit_code == 0 and calls == [], local.output  # no token: here
    monkeypatch.setenv("LAKEHOUSE_TOKEN", admin_token)
    remote = cli.invoke(cli_app, ["sql", query])
    assert remote.exit_code == 0, remote.output
    assert calls == ["http://lakehouse.test/api/sql"]
    strip = [ln for ln in remote.stdout.splitlines() if " ms " not in ln]
    assert strip == [ln for ln in local.stdout.splitlines() if " ms " not in ln]  # the same table
    assert sql_service.search_history(ctx, auth.authenticate_token(ctx, admin_token), limit=1)[0]["sql"] == query
    bad = cli.invoke(cli_app, ["sql", "SELECT month,\n  nosuch FROM gold.revenue"])
    assert bad.exit_code == 1 and "line 2, column 3" in bad.stderr and "^" in bad.stderr
    assert cli.invoke(cli_app, ["sql", query, "--local"]).exit_code == 0 and len(calls) == 2  # --local: here

    def refused(url: str, body: dict[str, object], token: str, timeout_s: float) -> tuple[int, bytes]:
        raise sql_server.Unreachable("connection refused")

    monkeypatch.setattr(sql_server, "post", refused)
    fallback = cli.invoke(cli_app, ["sql", query])
    assert fallback.exit_code == 0 and "2026-02" in fallback.stdout  # no server: answered here


def test_lakehouse_sql_loads_only_its_own_command() -> None:
    import subprocess
    import sys

    from lakehouse.cli import sql_server
    from lakehouse.services import sql as sql_service

    assert sql_server.MAX_PREVIEW == sql_service.MAX_PREVIEW
    probe = ("import sys; sys.argv = ['lakehouse', 'sql', '--help']\n"
             "from lakehouse.cli.entry import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('lakehouse.cli.main', 'lakehouse.cli.alerts', 'lakehouse.services.sql', "
             "'pyiceberg', 'duckdb', 'sqlalchemy') if m in sys.modules]\n"
             "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "Run a query on the lake" in out.stdout and "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_demo_prints_whole_column_names_and_values_in_80_columns(ctx: Context, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    from lakehouse.cli import demo
    from lakehouse.cli.common import console
    from lakehouse.lake.catalog import catalog_for
    from lakehouse.lake.tables import write_table

    columns: dict[str, list[object]] = {
        "company_id": [1], "account_id": [1], "month": ["2025-06-01"], "debit": ["100,880.85"],
        "credit": ["5,746.84"], "balance": ["95,134.01"], "lines": [9]}
    write_table(catalog_for(ctx.settings), "gold", "dev", "gl_trial_balance", pa.table(columns))
    monkeypatch.setattr(demo, "GOLD_PREVIEW", ["gold.gl_trial_balance"])
    monkeypatch.setattr(console, "width", 80)
    with console.capture() as printed:
        demo.show_gold(ctx)
    out = printed.get()
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines())
    for name, values in columns.items():
        assert name in out and str(values[0]) in out


@pytest.mark.parametrize("command", ["up", "serve"])
def test_a_bad_log_format_is_one_line_and_a_non_zero_exit(command: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli.main import app

    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, [command, "--log-format", "xml"])
    assert result.exit_code != 0
    out = (result.stdout + (result.stderr if result.stderr_bytes is not None else "")).strip()
    assert "--log-format must be auto, json or text, not 'xml'" in out and len(out.splitlines()) == 1


def test_demo_schedules_the_incremental_ingest_every_five_minutes_once(ctx: Context) -> None:
    """The demo leaves the Odoo ingest on a 5-minute schedule with silver and gold chained after it
    (issue 8's freshness < 15 min); starting the demo again changes nothing."""
    from lakehouse.cli.demo import schedule_demo_jobs
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import jobs

    schedule_demo_jobs(ctx)
    schedule_demo_jobs(ctx)
    found = {j["name"]: jobs.get_job(ctx, SYSTEM, "default", j["name"]) for j in jobs.list_jobs(ctx, SYSTEM, "default")}
    assert set(found) == {"odoo_ingest", "odoo_silver", "odoo_gold"}
    assert all(len(jobs.versions(ctx, SYSTEM, "default", name)) == 1 for name in found)
    ingest = found["odoo_ingest"]
    assert ingest["definition"]["schedule"]["cron"] == "*/5 * * * *" and ingest["next_fire_at"] is not None
    assert found["odoo_gold"]["definition"]["triggers"] == [{"on_success_of": "odoo_silver"}]
