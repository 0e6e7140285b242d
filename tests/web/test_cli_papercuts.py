"""Issue 11, the CLI's papercuts: the installed command in hints, grammar, short run ids."""

from __future__ import annotations

from pathlib import Path

from lakehouse.cli.demo import GOLD_PREVIEW, installed_command
from lakehouse.services.context import Context


def test_hints_use_the_command_as_installed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
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
    from lakehouse.services import connections
    from lakehouse.services.auth import SYSTEM

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
