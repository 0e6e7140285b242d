"""Environments and promotion: each gate refuses with a clear reason, approvals by the right person,
and stage/prod runs (manual, scheduled, triggered, backfilled) only ever use the promoted version."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from lakehouse.domain.principal import Principal
from lakehouse.services import audit, auth, backfills, job_runs, jobs, promotions, runs, scheduler
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput
from lakehouse.store.tables import audit_log, phases
from lakehouse.store.tables import runs as runs_table
from tests.clock_support import Clock
from tests.jobs.conftest import scheduled, sql_job


def _finish(ctx: Context, run_id: str, status: str = "succeeded", dq: dict[str, Any] | None = None) -> None:
    """Finish a run as a worker would have (its validate phase carrying ``dq`` when given)."""
    ctx.clock.advance(seconds=1)  # type: ignore[attr-defined]
    with ctx.db.write() as conn:
        conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
            status=status, finished_at=ctx.clock() + timedelta(seconds=1)))
        if dq is not None:
            conn.execute(update(phases).where(phases.c.run_id == run_id).values(
                type="validate", output_manifest={"outputs": {}, "dq": dq}))


def _runs(ctx: Context, admin: Principal, env: str, n: int, status: str = "succeeded",
          dq: dict[str, Any] | None = None, job: str = "daily") -> list[str]:
    out = []
    for _ in range(n):
        run, _ = job_runs.run_job(ctx, admin, "default", job, environment=env)
        _finish(ctx, run["run_id"], status, dq)
        out.append(run["run_id"])
    return out


def _actions(ctx: Context) -> list[str]:
    with ctx.db.read() as conn:
        return [r[0] for r in conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]


@pytest.fixture
def people(ctx: Context) -> dict[str, Principal]:
    out = {}
    for name, role in (("erin", "engineer"), ("anna", "admin"), ("eddy", "engineer")):
        auth.create_user(ctx, name, role, None)
        out[name] = Principal(name=name, role=role)
    return out


def test_stage_needs_successful_runs_in_dev(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 2})
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, admin, "default", "daily", "stage")
    assert exc.value.code == "promotion_gate_failed"
    assert "v1 has 0 finished runs in dev; 2 needed" in exc.value.message
    ok = _runs(ctx, admin, "dev", 1)
    bad = _runs(ctx, admin, "dev", 1, "failed")
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, admin, "default", "daily", "stage")
    assert f"run {bad[0]} of v1 in dev failed" in exc.value.message
    assert {g["gate"]: g["ok"] for g in exc.value.details} == {"runs": False}
    assert ok
    _runs(ctx, admin, "dev", 2)
    done = promotions.promote(ctx, admin, "default", "daily", "stage")
    assert (done["status"], done["version"], done["decided_by"]) == ("promoted", 1, "system")
    assert _actions(ctx).count("job.promotion_refused") == 2 and _actions(ctx)[-1] == "job.promote"
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, admin, "default", "daily", "stage")
    assert exc.value.code == "already_promoted"


def test_prod_needs_stage_first_dq_and_an_approver(ctx: Context, clock: Clock, admin: Principal,
                                                   people: dict[str, Principal]) -> None:
    erin, anna, eddy = people["erin"], people["anna"], people["eddy"]
    jobs.save(ctx, erin, "default", sql_job(), mode="create")
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 0})
    promotions.set_gates(ctx, admin, "default", "prod", {"min_runs": 2, "require_dq": True,
                                                         "require_approval": True, "approver_role": "engineer"})
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, erin, "default", "daily", "prod")
    assert "v1 was never promoted to stage; promote it there first" in exc.value.message
    promotions.promote(ctx, erin, "default", "daily", "stage")
    _runs(ctx, erin, "stage", 2)  # no validate phase: no DQ results
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, erin, "default", "daily", "prod")
    assert "has no data-quality results" in exc.value.message
    _runs(ctx, erin, "stage", 1, dq={"checks": 3, "passed": 2, "warnings": 1})
    _runs(ctx, erin, "stage", 1, dq={"checks": 3, "passed": 3, "warnings": 0})
    with pytest.raises(Conflict) as exc:
        promotions.promote(ctx, erin, "default", "daily", "prod")
    assert "1 of 3 data-quality checks failed" in exc.value.message
    _runs(ctx, erin, "stage", 2, dq={"checks": 3, "passed": 3, "warnings": 0})
    pending = promotions.promote(ctx, erin, "default", "daily", "prod")
    assert pending["status"] == "pending"
    with pytest.raises(Conflict) as exc:  # waiting for approval is not promoted
        job_runs.run_job(ctx, erin, "default", "daily", environment="prod")
    assert exc.value.code == "not_promoted"

    with pytest.raises(Forbidden) as refused:  # the author (and requester) may not approve
        promotions.approve(ctx, erin, "default", "daily", "prod")
    assert "erin wrote this version" in refused.value.message and refused.value.code == "approver_refused"
    promotions.set_gates(ctx, admin, "default", "prod", {"approver_role": "admin"})
    with pytest.raises(Forbidden) as refused:  # an engineer is not an admin
        promotions.approve(ctx, eddy, "default", "daily", "prod")
    assert "needs the admin role" in refused.value.message
    done = promotions.approve(ctx, anna, "default", "daily", "prod", comment="ship it")
    assert (done["status"], done["decided_by"], done["comment"]) == ("promoted", "anna", "ship it")
    acts = _actions(ctx)
    assert acts.count("job.approval_refused") == 2 and acts[-1] == "job.promote"
    run, _ = job_runs.run_job(ctx, erin, "default", "daily", environment="prod")
    assert run["labels"]["job_version"] == "1"


def test_approval_by_the_author_allowed_when_the_workspace_says_so(ctx: Context, clock: Clock,
                                                                   admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 0, "require_approval": True,
                                                          "approver_not_author": False})
    promotions.promote(ctx, admin, "default", "daily", "stage")
    assert promotions.approve(ctx, admin, "default", "daily", "stage")["status"] == "promoted"


def test_reject_and_withdraw_are_audited(ctx: Context, clock: Clock, admin: Principal,
                                         people: dict[str, Principal]) -> None:
    jobs.save(ctx, people["erin"], "default", sql_job(), mode="create")
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 0, "require_approval": True})
    promotions.promote(ctx, people["erin"], "default", "daily", "stage")
    assert promotions.reject(ctx, people["erin"], "default", "daily", "stage")["status"] == "rejected"
    promotions.promote(ctx, people["erin"], "default", "daily", "stage")
    rejected = promotions.reject(ctx, people["anna"], "default", "daily", "stage", "not yet")
    assert (rejected["status"], rejected["comment"]) == ("rejected", "not yet")
    assert _actions(ctx).count("job.promotion_rejected") == 2
    with pytest.raises(Conflict) as exc:
        promotions.approve(ctx, people["anna"], "default", "daily", "stage")
    assert exc.value.code == "no_pending_promotion"
    with ctx.db.write() as conn:
        audit.seal(conn)
        assert audit.verify(conn)[0]


def test_non_promoted_versions_never_run_in_stage_or_prod(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    with pytest.raises(Conflict) as exc:
        job_runs.run_job(ctx, admin, "default", "daily", environment="prod")
    assert exc.value.code == "not_promoted" and "no version promoted to prod" in exc.value.message
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 0})
    promotions.promote(ctx, admin, "default", "daily", "stage")
    jobs.save(ctx, admin, "default", sql_job(description="draft"), mode="update")  # v2, a draft
    with pytest.raises(Conflict) as exc:
        job_runs.run_job(ctx, admin, "default", "daily", environment="stage", version=2)
    assert "v2 of daily is not the version promoted to stage (v1)" in exc.value.message
    run, _ = job_runs.run_job(ctx, admin, "default", "daily", environment="stage")
    assert run["labels"]["job_version"] == "1"
    dev, _ = job_runs.run_job(ctx, admin, "default", "daily")
    assert dev["labels"]["job_version"] == "2" and dev["environment"] == "dev"
    with pytest.raises(Conflict):  # a dev run of the draft cannot be rerun in stage
        job_runs.rerun(ctx, admin, dev["run_id"], environment="stage")
    b = backfills.create(ctx, admin, "default", "daily", date(2024, 1, 1), date(2024, 1, 2), environment="stage")
    assert b["version"] == 1


def test_a_stage_schedule_runs_the_promoted_version(ctx: Context, clock: Clock, admin: Principal) -> None:
    def job(description: str) -> dict[str, Any]:
        return {**scheduled("hourly", "0 * * * *", environment="stage"), "description": description}

    jobs.save(ctx, admin, "default", job("one"))
    clock.set(datetime(2024, 1, 1, 13, 0, 5, tzinfo=UTC))
    result = scheduler.tick(ctx)
    assert (result.scheduled, result.skipped) == (0, 1)  # nothing promoted to stage: the tick is skipped
    promotions.set_gates(ctx, admin, "default", "stage", {"min_runs": 0})
    promotions.promote(ctx, admin, "default", "hourly", "stage")
    jobs.save(ctx, admin, "default", job("two (a draft)"))
    clock.set(datetime(2024, 1, 1, 14, 0, 5, tzinfo=UTC))
    assert scheduler.tick(ctx).scheduled == 1
    made = [r for r in runs.list_runs(ctx, admin) if r["spec_slug"] == "hourly"]
    assert len(made) == 1
    run = runs.get_run(ctx, made[0]["run_id"], admin)
    assert (run["environment"], run["labels"]["job_version"]) == ("stage", "1")


def test_gate_settings_are_validated_and_admin_only(ctx: Context, clock: Clock, admin: Principal,
                                                    people: dict[str, Principal]) -> None:
    with pytest.raises(InvalidInput) as exc:
        promotions.set_gates(ctx, admin, "default", "dev", {"min_runs": 1})
    assert exc.value.code == "invalid_environment"
    with pytest.raises(InvalidInput) as exc:
        promotions.set_gates(ctx, admin, "default", "prod", {"min_runs": -1})
    assert exc.value.details[0]["field"] == "min_runs"
    with pytest.raises(InvalidInput):
        promotions.set_gates(ctx, admin, "default", "prod", {"approver_role": "viewer"})
    with pytest.raises(InvalidInput):
        promotions.set_gates(ctx, admin, "default", "prod", {"skip_everything": True})
    with pytest.raises(Forbidden):
        promotions.set_gates(ctx, people["erin"], "default", "prod", {"min_runs": 0})
    g = promotions.get_gates(ctx, admin, "default")
    assert g["prod"] == {**g["prod"], "min_runs": 3, "require_dq": True, "require_approval": True,
                         "configured": False}
    promotions.set_gates(ctx, admin, "default", "prod", {"min_runs": 5})
    g = promotions.get_gates(ctx, admin, "default")["prod"]
    assert (g["min_runs"], g["require_dq"], g["configured"], g["updated_by"]) == (5, True, True, "system")


def test_state_shows_each_environment_and_its_gates(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", sql_job(), mode="create")
    _runs(ctx, admin, "dev", 1)
    promotions.promote(ctx, admin, "default", "daily", "stage")
    s = promotions.state(ctx, admin, "default", "daily")
    stage, prod = s["environments"]
    assert stage["promoted"]["version"] == 1 and stage["checks"] == []
    assert prod["promoted"] is None
    assert [c["gate"] for c in prod["checks"]] == ["promoted_to_lower", "runs", "dq"]
    assert [h["status"] for h in s["history"]] == ["promoted"]


def test_cli_promote_approve_and_gates(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lakehouse.cli.main import app

    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    runner = CliRunner()
    jobs.save(ctx, Principal(name="erin", role="engineer"), "default", sql_job(), mode="create")
    refused = runner.invoke(app, ["jobs", "promote", "daily", "--to", "stage"])
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "v1 has 0 finished runs in dev; 1 needed" in refused.output
    bad = runner.invoke(app, ["jobs", "promote", "daily", "--to", "dev"])
    assert bad.exit_code == 1 and "stage or prod" in bad.output
    gates = runner.invoke(app, ["jobs", "gates", "--env", "stage", "--min-runs", "0", "--require-approval"])
    assert gates.exit_code == 0, gates.output
    assert runner.invoke(app, ["jobs", "gates", "--min-runs", "0"]).exit_code == 1
    pending = runner.invoke(app, ["jobs", "promote", "daily", "--to", "stage"])
    assert pending.exit_code == 0 and "waiting for approval" in pending.output
    own = runner.invoke(app, ["jobs", "approve", "daily", "--env", "stage", "--by", "erin"])
    assert own.exit_code == 1 and "erin wrote this version" in own.output
    ok = runner.invoke(app, ["jobs", "approve", "daily", "--env", "stage", "--by", "anna"])
    assert ok.exit_code == 0 and "promoted to stage (approved by anna)" in ok.output
    state = runner.invoke(app, ["jobs", "promotions", "daily"])
    assert "stage: v1" in state.output and "prod: nothing promoted" in state.output
