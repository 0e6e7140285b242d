"""The ``dbt`` phase type (dbt-core + dbt-duckdb in a child process) over a lake built by the reference
pipelines: the reference project examples/dbt_odoo_gold gives the SQL pipeline's gold (content hashes),
tests become DQ results, lineage comes from the manifest, incremental models start from the published
table, and a project that does not compile or a failing test publishes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.engines.dbt_project import pack
from lakehouse.services import artifacts, runs
from tests.engines.conftest import ROOT, Lake

pytest.importorskip("dbt.adapters.duckdb")
pytestmark = pytest.mark.slow

MARTS = ("gold.gl_trial_balance", "gold.revenue_monthly", "gold.sales_pipeline")
PROJECT_YML = "name: t\nversion: '1.0.0'\nconfig-version: 2\nprofile: lakehouse\nmodel-paths: [models]\n"
SOURCES = ("version: 2\nsources:\n  - name: silver\n    schema: silver\n    tables:\n"
           "      - name: sales_orders\n      - name: journal_lines\n")


def _run(lake: Lake, files: dict[str, str], **params: Any) -> dict[str, Any]:
    return lake.run([{"name": "dbt", "type": "dbt", "params": params, "max_attempts": 1},
                     {"name": "publish", "type": "publish", "params": {}}], {"dbt_project": files})


def test_the_reference_project_gives_the_sql_pipelines_gold(lake: Lake) -> None:
    run = _run(lake, pack(ROOT / "examples" / "dbt_odoo_gold"), command="build")
    assert run["status"] == "succeeded", run["error"]
    out = next(p for p in run["phases"] if p["name"] == "dbt")["output_manifest"]
    assert sorted(out["outputs"]) == sorted(MARTS)  # the ephemeral staging model is not published
    for table in MARTS:
        assert out["outputs"][table]["content_hash"] == lake.reference[table], table
        assert lake.table_hash(table) == lake.reference[table]
    edges = {e["outputs"][0]: e["inputs"] for e in out["lineage"]["edges"]}
    assert edges == {"gold.gl_trial_balance": ["silver.journal_lines"],
                     "gold.revenue_monthly": ["silver.accounts", "silver.journal_lines"],
                     "gold.sales_pipeline": ["silver.sales_orders"]}
    assert set(out["reads"]) >= {"silver.journal_lines", "silver.accounts", "silver.sales_orders"}
    events = runs.read_events(lake.ctx, run["run_id"], SYSTEM)
    dq = [e for e in events if e["type"] == "DQ_RESULT"]
    assert len(dq) == out["dq"]["checks"] >= 6
    assert any(e["payload"]["result"]["type"] == "dbt:gl_trial_balance_unique" and e["payload"]["result"]["passed"]
               for e in dq)
    names = {a["name"] for a in artifacts.list_for_run(lake.ctx, run["run_id"], SYSTEM)}
    assert {"manifest.json", "run_results.json", "dq_results.json"} <= names


def test_incremental_models_start_from_the_published_table(lake: Lake) -> None:
    model = ("{{ config(materialized='incremental', unique_key='order_id') }}\n"
             "SELECT order_id, {{ var('batch') }} AS batch FROM {{ source('silver', 'sales_orders') }}\n"
             "{% if is_incremental() %} WHERE order_id > (SELECT max(order_id) - 3 FROM {{ this }}) {% endif %}\n")
    files = {"dbt_project.yml": PROJECT_YML, "models/sources.yml": SOURCES, "models/gold/order_batches.sql": model}
    first = _run(lake, files, command="run", vars={"batch": 1})
    assert first["status"] == "succeeded", first["error"]
    second = _run(lake, files, command="run", vars={"batch": 2})
    assert second["status"] == "succeeded", second["error"]
    from lakehouse.lake import tables as lake_tables

    rows = lake_tables.read_table(lake.catalog(), "gold", "dev", "order_batches").to_pylist()
    batches = sorted(r["batch"] for r in rows)
    assert len(rows) == len({r["order_id"] for r in rows}) > 3
    assert batches.count(2) == 3 and batches.count(1) == len(rows) - 3  # only the last 3 ids were rebuilt


def test_a_project_that_does_not_compile_publishes_nothing(lake: Lake) -> None:
    before = lake.snapshot("gold.sales_pipeline")
    files = {"dbt_project.yml": PROJECT_YML, "models/sources.yml": SOURCES,
             "models/gold/sales_pipeline.sql": "SELECT * FROM {{ ref('no_such_model') }}"}
    run = _run(lake, files)
    assert run["status"] == "failed"
    assert "does not compile" in run["error"] and "no_such_model" in run["error"], run["error"]
    assert lake.snapshot("gold.sales_pipeline") == before


def test_a_failing_dbt_test_publishes_nothing(lake: Lake, tmp_path: Path) -> None:
    before = lake.snapshot("gold.sales_pipeline")
    files = {"dbt_project.yml": PROJECT_YML, "models/sources.yml": SOURCES,
             "models/gold/sales_pipeline.sql": "SELECT 1 AS company_id, NULL AS state",
             "models/gold/schema.yml": "version: 2\nmodels:\n  - name: sales_pipeline\n    columns:\n"
                                       "      - name: state\n        data_tests: [not_null]\n"}
    run = _run(lake, files)
    assert run["status"] == "failed"
    assert "dbt:not_null on gold.sales_pipeline" in run["error"], run["error"]
    assert lake.snapshot("gold.sales_pipeline") == before
    with pytest.raises(ValueError, match="Python models"):
        pack_dir = tmp_path / "p"
        (pack_dir / "models").mkdir(parents=True)
        (pack_dir / "dbt_project.yml").write_text(PROJECT_YML)
        (pack_dir / "models" / "m.py").write_text("def model(dbt, session): ...")
        pack(pack_dir)
