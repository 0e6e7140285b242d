"""spark and dbt jobs become runs: the engine's phase then publish; a spark job naming a pipeline runs
that pipeline's transform phase on Spark; a dbt job carries its packed project; a PySpark callable an
admin did not register is refused when the run is created."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from lakehouse.domain.jobs import JobDefinition, RunTrigger
from lakehouse.services import job_runs
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from tests.engines.conftest import ROOT

VERSION = {"version": 1, "git_sha": None, "content_hash": "0" * 64}


def _request(ctx: Context, definition: dict[str, Any]) -> Any:
    d = JobDefinition.model_validate(definition)
    return job_runs.build_request(ctx, workspace="default", workspace_id=1, job_id=1, version=VERSION, d=d,
                                  params={}, environment="dev", trigger=RunTrigger.MANUAL)


@pytest.fixture
def jobs_ctx(ctx: Context) -> Context:
    shutil.copytree(ROOT / "pipelines", ctx.settings.home / "pipelines")
    shutil.copytree(ROOT / "examples" / "dbt_odoo_gold", ctx.settings.home / "pipelines" / "dbt_odoo_gold")
    ctx.settings.pipelines_dir = ctx.settings.home / "pipelines"
    return ctx


def test_engine_jobs_build_their_phases(jobs_ctx: Context) -> None:
    req = _request(jobs_ctx, {"name": "gold_on_spark", "type": "spark",
                              "spark": {"pipeline": "silver_to_gold", "master": "local[2]"}})
    assert [(p.name, p.type) for p in req.phases] == [("transform", "spark"), ("validate", "validate"),
                                                      ("publish", "publish")]
    assert req.phases[0].params["master"] == "local[2]" and req.input_manifest["spec"]["name"] == "silver_to_gold"
    req = _request(jobs_ctx, {"name": "one_query", "type": "spark",
                              "spark": {"sql": "SELECT 1 AS x", "target": "gold.x", "mode": "append"}})
    assert [p.type for p in req.phases] == ["spark", "publish"]
    assert req.input_manifest["write"] == {"gold.x": {"mode": "append", "keys": []}}
    req = _request(jobs_ctx, {"name": "marts", "type": "dbt", "dbt": {"project": "dbt_odoo_gold", "select": "gold"}})
    assert [p.type for p in req.phases] == ["dbt", "publish"]
    assert "models/gold/gl_trial_balance.sql" in req.input_manifest["dbt_project"]
    assert req.phases[0].params["select"] == "gold"


def test_engine_jobs_refuse_what_may_not_run(jobs_ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="under the pipelines folder"):
        _request(jobs_ctx, {"name": "escape", "type": "dbt", "dbt": {"project": "../../etc"}})
    with pytest.raises(InvalidInput) as exc:
        _request(jobs_ctx, {"name": "evil", "type": "spark", "spark": {"callable": "os:system"}})
    assert exc.value.code == "python_not_allowed"
