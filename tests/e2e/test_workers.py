"""Real `lakehouse serve` + `lakehouse worker` processes: races, crashes and restarts."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from lakehouse.services import auth
from lakehouse.services.context import Context
from lakehouse.store.tables import phases
from tests.e2e.harness import running_server, spawn_worker, stop, wait_for

pytestmark = pytest.mark.slow


def tokens(ctx: Context) -> tuple[dict[str, str], str]:
    auth.create_user(ctx, "eng", "engineer", None)
    auth.create_user(ctx, "exec", "executor", None)
    return {"Authorization": f"Bearer {auth.create_token(ctx, 'eng')}"}, auth.create_token(ctx, "exec")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_eight_workers_race_over_2000_phases_each_runs_once(ctx: Context, tmp_path: Path) -> None:
    eng, exec_token = tokens(ctx)
    ledger = tmp_path / "ledger.txt"
    with running_server(tmp_path / "home", ctx.settings.database_url, lease_ttl_s=30) as server:
        http = httpx.Client(base_url=server.base, headers=eng, timeout=30)
        body = {"spec_slug": "race", "git_sha": "g", "phases": [
            {"name": f"p{i}", "type": "python", "params": {
                "callable": "lakehouse.handlers.samples:record_execution", "args": {"path": str(ledger)}}}
            for i in range(4)]}
        run_ids = [http.post("/ops/runs", json=body).json()["run_id"] for _ in range(500)]
        workers = [spawn_worker(server, exec_token, f"racer-{i}", tmp_path, "--max-phases", "4") for i in range(8)]
        try:
            def all_done() -> bool:
                page = http.get("/ops/runs", params={"status": "succeeded", "limit": 500}).json()["runs"]
                return len(page) == 500
            wait_for(all_done, timeout=300, interval=0.5, what="500 runs to succeed")
        finally:
            stop(workers)
        lines = ledger.read_text().splitlines()
        counts = collections.Counter((ln.split()[0], ln.split()[1]) for ln in lines)
        assert len(lines) == 2000
        assert len(counts) == 2000 and set(counts.values()) == {1}
        assert {r for r, _ in counts} == set(run_ids)
        executors = {e["executor_id"] for e in http.get("/ops/executors").json()["executors"]}
        assert len(executors & {f"racer-{i}" for i in range(8)}) >= 2  # the work really was shared


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_kill_9_mid_phase_then_another_worker_finishes(ctx: Context, tmp_path: Path) -> None:
    eng, exec_token = tokens(ctx)
    with running_server(tmp_path / "home", ctx.settings.database_url, lease_ttl_s=2, reaper_interval_s=0.2,
                        retry_base_s=0.05, retry_max_s=0.1) as server:
        http = httpx.Client(base_url=server.base, headers=eng, timeout=30)
        run = http.post("/ops/runs", json={"spec_slug": "crash", "git_sha": "g", "phases": [
            {"name": "long", "type": "sleep", "params": {"seconds": 4}},
            {"name": "after", "type": "noop"}]}).json()
        rid = run["run_id"]
        victim = spawn_worker(server, exec_token, "victim", tmp_path)
        engine = create_engine(ctx.settings.database_url)
        try:
            def leased() -> str | None:
                with engine.connect() as conn:
                    return conn.execute(select(phases.c.lease_token).where(
                        phases.c.run_id == rid, phases.c.name == "long", phases.c.status == "running")).scalar()
            old_token = wait_for(leased, 30, what="the victim to start the phase")
            time.sleep(0.5)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            rescuer = spawn_worker(server, exec_token, "rescuer", tmp_path)
            try:
                wait_for(lambda: http.get(f"/ops/runs/{rid}").json()["status"] == "succeeded", 60,
                         what="the run to succeed")
            finally:
                stop([rescuer])
        finally:
            engine.dispose()
        r = http.post(f"/ops/runs/{rid}/complete", json={"lease_token": old_token},
                      headers={"Authorization": f"Bearer {exec_token}"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "lease_lost"
        events = http.get(f"/ops/runs/{rid}/events").json()["events"]
        kinds = [e["type"] for e in events]
        assert kinds.index("LEASE_EXPIRED") < kinds.index("PHASE_REQUEUED")
        expired = next(e for e in events if e["type"] == "LEASE_EXPIRED")
        assert expired["phase"] == "long" and expired["payload"]["executor_id"] == "victim"
        succeeded = collections.Counter(e["phase"] for e in events if e["type"] == "PHASE_SUCCEEDED")
        assert succeeded == {"long": 1, "after": 1}
        final = http.get(f"/ops/runs/{rid}").json()
        assert final["phases"][0]["attempt"] == 2 and final["phases"][0]["executor_id"] == "rescuer"


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_server_restart_mid_run_loses_nothing(ctx: Context, tmp_path: Path) -> None:
    eng, exec_token = tokens(ctx)
    with running_server(tmp_path / "home", ctx.settings.database_url, lease_ttl_s=10) as server:
        http = httpx.Client(base_url=server.base, headers=eng, timeout=30)
        rid = http.post("/ops/runs", json={"spec_slug": "restart", "git_sha": "g", "phases": [
            {"name": f"s{i}", "type": "sleep", "params": {"seconds": 0.4}} for i in range(6)]}).json()["run_id"]
        worker = spawn_worker(server, exec_token, "steady", tmp_path)
        try:
            wait_for(lambda: http.get(f"/ops/runs/{rid}").json()["phases"][1]["status"] == "succeeded", 30,
                     what="two phases to finish")
            before = http.get(f"/ops/runs/{rid}/events").json()["events"]
            server.kill(signal.SIGKILL)
            time.sleep(1.0)
            server.start()
            wait_for(lambda: http.get(f"/ops/runs/{rid}").json()["status"] == "succeeded", 60,
                     what="the run to finish after the restart")
        finally:
            stop([worker])
        after = http.get(f"/ops/runs/{rid}/events").json()["events"]
        assert after[: len(before)] == before  # nothing written before the crash changed or vanished
        assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
        done = collections.Counter(e["phase"] for e in after if e["type"] == "PHASE_SUCCEEDED")
        assert done == {f"s{i}": 1 for i in range(6)}
