"""`lakehouse sql "…"`: table, csv and json output; errors as one line with the position."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from lakehouse.cli.main import app
from lakehouse.lake.tables import write_table
from lakehouse.settings import Settings


@pytest.fixture
def cli_env(settings: Settings, catalog: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", settings.warehouse)
    write_table(catalog, "gold", "dev", "revenue", pa.table({"month": ["2026-01", "2026-02"], "amount": [10.5, None]}))
    write_table(catalog, "gold", "prod", "revenue", pa.table({"month": ["2025-12"], "amount": [1.0]}))
    return settings


def test_sql_command(cli_env: Settings) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["sql", "SELECT * FROM gold.revenue ORDER BY month"])
    assert r.exit_code == 0, r.output
    assert "2026-01" in r.stdout and "10.5" in r.stdout and "2 rows" in r.stdout and "gold.revenue@" in r.stdout

    r = runner.invoke(app, ["sql", "SELECT * FROM gold.revenue ORDER BY month", "--format", "csv"])
    assert r.exit_code == 0 and r.stdout == "month,amount\n2026-01,10.5\n2026-02,\n"
    r = runner.invoke(app, ["sql", "SELECT month FROM gold.revenue", "--format", "json", "--env", "prod"])
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"month": "2025-12"}]

    r = runner.invoke(app, ["sql", "SELECT month,\n  nosuch FROM gold.revenue"])
    assert r.exit_code == 1 and "line 2, column 3" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["sql", "DELETE FROM gold.revenue"])
    assert r.exit_code == 1 and "read-only" in r.stderr
    r = runner.invoke(app, ["sql", "SELECT 1", "--engine", "trino"])
    assert r.exit_code == 1 and "Trino" in r.stderr
