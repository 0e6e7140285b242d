"""`lakehouse odoo seed` through its Typer sub-app."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lakehouse.cli.odoo import app

runner = CliRunner()


def test_seed_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odoo.db'}"
    result = runner.invoke(app, ["seed", "--url", url, "--scale", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "account_move_line" in result.stdout and "rows/s" in result.stdout
    again = runner.invoke(app, ["seed", "--url", url])
    assert again.exit_code == 1
    assert again.stderr.strip().startswith("error:") and "already has Odoo tables" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    reset = runner.invoke(app, ["seed", "--url", url, "--reset", "--seed", "3", "--anchor-date", "2025-07-01"])
    assert reset.exit_code == 0, reset.output


def test_seed_with_a_bad_url_fails_in_one_line() -> None:
    for url in ("postgresql://postgres@127.0.0.1:1/odoo", "mysql://localhost/odoo"):
        result = runner.invoke(app, ["seed", "--url", url])
        assert result.exit_code == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_seed_rejects_a_bad_anchor_date(tmp_path: Path) -> None:
    result = runner.invoke(app, ["seed", "--url", f"sqlite:///{tmp_path / 'x.db'}", "--anchor-date", "soon"])
    assert result.exit_code == 1 and "--anchor-date" in result.stderr
