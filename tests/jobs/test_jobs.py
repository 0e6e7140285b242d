"""Job definitions, versions, diff, parameters, runs of a version and reruns."""

from __future__ import annotations

import pytest

from lakehouse.domain.jobs import JobDefinition, ParamError, resolve_params
from lakehouse.domain.principal import Principal
from lakehouse.services import job_runs, jobs
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from tests.clock_support import Clock
from tests.jobs.conftest import sql_job


def test_edit_makes_a_new_version_and_runs_keep_theirs(ctx: Context, clock: Clock, admin: Principal) -> None:
    first = jobs.save(ctx, admin, "default", sql_job(), mode="create")
    assert (first.outcome, first.job["version"]) == ("created", 1)
    run1, _ = job_runs.run_job(ctx, admin, "default", "daily")
    assert jobs.save(ctx, admin, "default", sql_job()).outcome == "unchanged"
    second = jobs.save(ctx, admin, "default", sql_job(description="orders per day"), mode="update")
    assert (second.outcome, second.job["version"]) == ("updated", 2)
    assert second.job["content_hash"] != first.job["content_hash"]
    clock.advance(seconds=1)
    run2, _ = job_runs.run_job(ctx, admin, "default", "daily")
    assert (run1["labels"]["job_version"], run2["labels"]["job_version"]) == ("1", "2")
    assert run1["input_manifest"]["job"]["version"] == 1
    assert [v["version"] for v in jobs.versions(ctx, admin, "default", "daily")] == [2, 1]
    d = jobs.version_diff(ctx, admin, "default", "daily", 1, 2)["diff"]
    assert "-description: ''" in d and "+description: orders per day" in d and d.startswith("--- daily@v1")
    assert jobs.version_diff(ctx, admin, "default", "daily", 2, 2)["diff"] == ""
    runs_of = job_runs.job_runs(ctx, admin, "default", "daily")
    assert [(r["run_id"], r["version"]) for r in runs_of] == [(run2["run_id"], 2), (run1["run_id"], 1)]


def test_name_clash_and_unknown_job(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    with pytest.raises(Conflict) as exc:
        jobs.save(ctx, admin, "default", sql_job(description="other"), mode="create")
    assert exc.value.code == "job_exists"
    assert jobs.versions(ctx, admin, "default", "daily")[0]["version"] == 1
    with pytest.raises(NotFound):
        jobs.save(ctx, admin, "default", sql_job("nope"), mode="update")


def test_parameters_are_typed_and_recorded_on_the_run(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    run, _ = job_runs.run_job(ctx, admin, "default", "daily", {"day": "2024-03-01", "limit": "7"})
    assert run["phases"][0]["params"]["sql"] == "SELECT CAST('2024-03-01' AS DATE) AS day, 7 AS n"
    assert run["input_manifest"]["job"]["params"] == {"day": "2024-03-01", "limit": 7}
    assert run["labels"]["param.limit"] == "7"
    with pytest.raises(InvalidInput) as exc:
        job_runs.run_job(ctx, admin, "default", "daily", {"limit": "many", "colour": "red"})
    assert exc.value.code == "invalid_params"
    fields = {d["field"] for d in exc.value.details}
    assert fields == {"params.limit", "params.colour"}


def test_parameter_validation() -> None:
    defs = JobDefinition.model_validate({
        "name": "p", "type": "python", "python": {"callable": "m:f"},
        "params": {"s": {"type": "string"}, "i": {"type": "int", "default": 1},
                   "d": {"type": "decimal", "default": "1.5"}, "day": {"type": "date", "default": "2024-01-01"},
                   "at": {"type": "datetime", "default": "2024-01-01T02:00"}, "b": {"type": "bool", "default": False},
                   "e": {"type": "enum", "values": ["a", "b"], "default": "a"}},
    }).params
    assert resolve_params(defs, {"s": "x", "b": "yes", "d": 2, "e": "b"}) == {
        "s": "x", "i": 1, "d": "2", "day": "2024-01-01", "at": "2024-01-01T02:00:00", "b": True, "e": "b"}
    with pytest.raises(ParamError) as exc:
        resolve_params(defs, {"i": True, "d": "x", "day": "2024-13-01", "b": "maybe", "e": "c"})
    assert {e["field"] for e in exc.value.errors} == {"params.s", "params.i", "params.d", "params.day", "params.b",
                                                     "params.e"}


def test_sql_placeholders_must_be_declared(ctx: Context, clock: Clock, admin: Principal) -> None:
    bad = {"name": "bad", "type": "sql", "sql": {"query": "SELECT {{ nope }}"}}
    with pytest.raises(InvalidInput) as exc:
        jobs.save(ctx, admin, "default", bad)
    assert "nope" in exc.value.message
    assert jobs.list_jobs(ctx, admin) == []


def test_sql_string_parameters_are_quoted(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", {"name": "q", "type": "sql", "params": {"who": {"type": "string", "default": "x"}},
                                      "sql": {"query": "SELECT {{ who }} AS who"}})
    run, _ = job_runs.run_job(ctx, admin, "default", "q", {"who": "o'; DROP TABLE t; --"})
    assert run["phases"][0]["params"]["sql"] == "SELECT 'o''; DROP TABLE t; --' AS who"


def test_sql_job_with_a_target_is_transform_then_publish(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", {"name": "orders", "type": "sql",
                                      "sql": {"query": "SELECT 1 AS id", "target": "gold.orders", "mode": "append"}})
    run, _ = job_runs.run_job(ctx, admin, "default", "orders")
    assert [p["type"] for p in run["phases"]] == ["transform", "publish"]
    m = run["input_manifest"]
    assert m["spec"]["transforms"][0]["output"] == "gold.orders" and m["sql"] == {"query": "SELECT 1 AS id"}
    assert m["write"] == {"gold.orders": {"mode": "append", "keys": []}}


def test_python_job_must_be_registered(ctx: Context, clock: Clock, admin: Principal) -> None:
    with pytest.raises(InvalidInput) as exc:
        jobs.save(ctx, admin, "default", {"name": "py", "type": "python", "python": {"callable": "os:system"}})
    assert exc.value.details[0]["field"] == "python.callable"


def test_pipeline_job_by_name_uses_the_pipeline_phases(ctx: Context, clock: Clock, admin: Principal) -> None:
    from lakehouse.services import pipelines

    specs = pipelines.list_specs(ctx.settings.pipelines_dir)
    valid = [s for s in specs if s["valid"]]
    if not valid:
        pytest.skip("no valid pipeline in LAKEHOUSE_PIPELINES_DIR")
    jobs.save(ctx, admin, "default", {"name": "pl", "type": "pipeline", "pipeline": {"name": valid[0]["name"]}})
    run, _ = job_runs.run_job(ctx, admin, "default", "pl")
    assert [p["name"] for p in run["phases"]] == valid[0]["phases"]
    assert run["labels"]["job"] == "pl" and run["input_manifest"]["job"]["name"] == "pl"


def test_rerun_keeps_version_and_parameters(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    run, _ = job_runs.run_job(ctx, admin, "default", "daily", {"limit": 3})
    jobs.save(ctx, admin, "default", sql_job(description="v2"), mode="update")
    again, created = job_runs.rerun(ctx, admin, run["run_id"])
    assert created and again["run_id"] != run["run_id"]
    assert again["labels"]["job_version"] == "1" and again["labels"]["rerun_of"] == run["run_id"]
    assert again["phases"][0]["params"] == run["phases"][0]["params"]
    other, _ = job_runs.rerun(ctx, admin, run["run_id"], {"limit": 4})
    assert other["input_manifest"]["job"]["params"]["limit"] == 4


def test_archive_hides_the_job(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    jobs.archive(ctx, admin, "default", "daily")
    assert jobs.list_jobs(ctx, admin) == []
    with pytest.raises(NotFound):
        jobs.get_job(ctx, admin, "default", "daily")
    revived = jobs.save(ctx, admin, "default", sql_job(), mode="create")
    assert revived.job["version"] == 2 and revived.outcome == "created"
