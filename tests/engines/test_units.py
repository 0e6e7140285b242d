"""The engines' pure parts: Spark SQL rewriting, dbt project packing, outputs, lineage and DQ results."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.engines import dbt_project as proj
from lakehouse.engines.spark_sql import references, to_spark
from tests.engines.conftest import ROOT


def test_lake_names_and_variables_become_spark_sql() -> None:
    sql = "SELECT * FROM silver.journal_lines l JOIN Silver . accounts a ON getvariable('as_of')::DATE > l.date"
    out = to_spark(sql, {"as_of": "2025-12-31"})
    assert out == "SELECT * FROM silver__journal_lines l JOIN silver__accounts a ON '2025-12-31'::DATE > l.date"
    assert references(sql) == ["silver.accounts", "silver.journal_lines"]
    assert to_spark("SELECT getvariable('n')", {"n": 3}) == "SELECT 3"
    assert to_spark("SELECT getvariable('s')", {"s": "it's"}) == "SELECT 'it\\'s'"
    with pytest.raises(ValueError, match="no parameter 'missing'"):
        to_spark("SELECT getvariable('missing')", {})


def test_the_reference_project_packs_and_maps_its_models() -> None:
    files = proj.pack(ROOT / "examples" / "dbt_odoo_gold")
    assert "dbt_project.yml" in files and "models/gold/gl_trial_balance.sql" in files
    manifest = {
        "nodes": {
            "model.p.stg": {"resource_type": "model", "name": "stg", "path": "staging/stg.sql",
                            "config": {"materialized": "ephemeral"}},
            "model.p.mart": {"resource_type": "model", "name": "mart", "path": "gold/mart.sql",
                             "config": {"materialized": "table"}},
            "model.p.other": {"resource_type": "model", "name": "other", "path": "x/other.sql",
                              "config": {"materialized": "table", "meta": {"lakehouse_output": "silver.other"}}},
            "test.p.nn": {"resource_type": "test", "name": "not_null_mart_id", "attached_node": "model.p.mart",
                          "test_metadata": {"name": "not_null"}, "column_name": "id", "config": {"severity": "ERROR"}},
        },
        "sources": {"source.p.silver.lines": {"schema": "silver", "name": "lines"}},
        "parent_map": {"model.p.stg": ["source.p.silver.lines"], "model.p.mart": ["model.p.stg", "model.p.other"],
                       "model.p.other": ["source.p.silver.lines"]},
    }
    outputs = proj.model_outputs(manifest)
    assert outputs == {"model.p.mart": "gold.mart", "model.p.other": "silver.other"}
    assert proj.lineage_edges(manifest, outputs) == [
        {"inputs": ["silver.lines", "silver.other"], "outputs": ["gold.mart"]},
        {"inputs": ["silver.lines"], "outputs": ["silver.other"]}]
    [r] = proj.dq_results(manifest, {"results": [{"unique_id": "test.p.nn", "status": "fail", "failures": 2}]},
                          outputs)
    assert (r["table"], r["type"], r["severity"], r["passed"]) == ("gold.mart", "dbt:not_null", "error", False)


@pytest.mark.parametrize("files, message", [
    ({"models/a.sql": "select 1"}, "dbt_project.yml"),
    ({"dbt_project.yml": "", "../x.sql": ""}, "bad file name"),
    ({"dbt_project.yml": "", "models/m.py": ""}, "Python models"),
    ({"dbt_project.yml": "", "models/m.so": ""}, "files only"),
])
def test_bad_projects_are_refused(files: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(proj.ProjectError, match=message):
        proj.unpack(files, tmp_path)
