"""Issue 10 §3 and §8: executors bound to workspaces serve only those, and the executor registry
does not disclose other workspaces' runs. Each test is one attack (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from lakehouse.domain.principal import Principal
from lakehouse.services import protocol
from tests.security.conftest import Attack

NOOP = [{"name": "p0", "type": "noop"}, {"name": "p1", "type": "noop"}]
SHARED_POOL = Principal(name="pool", role="executor")  # no workspace binding: serves every workspace


def claim(attack: Attack, who: str, run_id: str | None = None) -> Any:
    path = f"/ops/runs/{run_id}/claim" if run_id else "/ops/claim"
    return attack.client.post(path, headers=attack.headers(who),
                              json={"executor_id": f"{who}-1", "capabilities": ["noop"], "max_phases": 10})


def test_bound_executor_cannot_claim_foreign_workspace_run(attack: Attack) -> None:
    alpha = attack.run("alpha_engineer", "alpha", NOOP)
    assert alpha["status_code"] == 201
    assert claim(attack, "beta_executor").status_code == 204
    r = claim(attack, "beta_executor", str(alpha["run_id"]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"
    assert attack.client.get(f"/ops/runs/{alpha['run_id']}", headers=attack.headers("admin")).json()[
        "phases"][0]["status"] == "queued"
    beta = attack.run("beta_engineer", "beta", NOOP)
    [got] = claim(attack, "beta_executor").json()["claims"]
    assert got["run_id"] == beta["run_id"]  # its own workspace's work still flows
    [shared] = claim(attack, "executor").json()["claims"]
    assert shared["run_id"] == alpha["run_id"]  # and the shared pool serves every workspace


def test_claim_scope_comes_from_the_run_record_not_the_manifest(attack: Attack) -> None:
    """The workspace a phase acts in is the run's, from the server's record; a caller-written
    ``input_manifest`` or params naming another workspace changes nothing."""
    beta = attack.run("beta_engineer", "beta", [{"name": "p0", "type": "noop", "params": {"workspace": "alpha"}}],
                      input_manifest={"workspace": "alpha", "created_by": "admin"})
    [got] = claim(attack, "beta_executor").json()["claims"]
    assert got["run_id"] == beta["run_id"]
    assert got["workspace"] == "beta" and got["created_by"] == "beta_engineer"


def _foreign_lease(attack: Attack) -> tuple[str, str]:
    """A run of ``alpha`` leased to the shared pool; the attacker (bound to ``beta``) has its token."""
    alpha = attack.run("alpha_engineer", "alpha", NOOP)
    [c] = protocol.claim(attack.ctx, SHARED_POOL, "pool-1", ["noop"])
    assert c["run_id"] == alpha["run_id"]
    return c["run_id"], c["lease_token"]


def _event() -> dict[str, Any]:
    return {"event_id": "forged-1", "type": "PHASE_LOG", "ts": datetime.now(UTC).isoformat(), "message": "x"}


FOREIGN_CALLS: dict[str, Callable[[str, str], tuple[str, dict[str, Any]]]] = {
    "complete": lambda run, token: (f"/ops/runs/{run}/complete", {"lease_token": token, "output_manifest": {}}),
    "heartbeat": lambda run, token: (f"/ops/runs/{run}/heartbeat", {"lease_token": token}),
    "fail": lambda run, token: (f"/ops/runs/{run}/fail", {"lease_token": token, "error": "x", "retryable": False}),
    "release": lambda run, token: (f"/ops/runs/{run}/release", {"lease_token": token}),
    "events": lambda run, token: (f"/ops/runs/{run}/events", {"events": [_event()]}),
    "events_with_lease": lambda run, token: (f"/ops/runs/{run}/events", {"events": [_event()], "lease_token": token}),
}


@pytest.mark.parametrize("call", sorted(FOREIGN_CALLS))
def test_bound_executor_cannot_complete_foreign_run(attack: Attack, call: str) -> None:
    """Even holding a leaked lease token, an executor bound to ``beta`` cannot act on ``alpha``'s run:
    404 as if the run did not exist, and nothing changes."""
    run_id, token = _foreign_lease(attack)
    before = attack.client.get(f"/ops/runs/{run_id}/events", headers=attack.headers("admin")).json()
    path, body = FOREIGN_CALLS[call](run_id, token)
    r = attack.client.post(path, headers=attack.headers("beta_executor"), json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found", r.text
    assert attack.client.get(f"/ops/runs/{run_id}/events", headers=attack.headers("admin")).json() == before
    ok = attack.client.post(f"/ops/runs/{run_id}/complete", headers=attack.headers("executor"),
                            json={"lease_token": token, "output_manifest": {}})
    assert ok.status_code == 200  # the lease is intact for its real holder


def test_bound_executor_cannot_batch_complete_or_heartbeat_foreign_run(attack: Attack) -> None:
    run_id, token = _foreign_lease(attack)
    done = attack.client.post("/ops/complete", headers=attack.headers("beta_executor"), json={
        "completions": [{"run_id": run_id, "lease_token": token, "output_manifest": {}}]}).json()
    assert done["results"][0]["error"]["code"] == "run_not_found"
    beat = attack.client.post("/ops/heartbeat", headers=attack.headers("beta_executor"), json={
        "leases": [{"run_id": run_id, "lease_token": token}]}).json()
    assert beat["results"][0]["error"]["code"] == "run_not_found"
    run = attack.client.get(f"/ops/runs/{run_id}", headers=attack.headers("admin")).json()
    assert run["phases"][0]["status"] == "running"


def test_bound_executor_cannot_register_artifacts_on_foreign_run(attack: Attack) -> None:
    run_id, _ = _foreign_lease(attack)
    content = b"planted"
    sha = hashlib.sha256(content).hexdigest()
    up = attack.client.put(f"/ops/artifacts/{sha}", headers={**attack.headers("beta_executor"),
                                                              "content-type": "application/octet-stream"},
                           content=content)
    assert up.status_code == 200
    r = attack.client.post("/ops/artifacts", headers=attack.headers("beta_executor"), json={
        "run_id": run_id, "phase": "p0", "name": "planted.txt", "sha256": sha, "size_bytes": len(content),
        "media_type": "text/plain"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"


def test_executors_list_hides_foreign_run_ids(attack: Attack) -> None:
    run_id, _ = _foreign_lease(attack)

    def pool(who: str) -> dict[str, Any]:
        rows = attack.client.get("/ops/executors", headers=attack.headers(who)).json()["executors"]
        return next(e for e in rows if e["executor_id"] == "pool-1")

    for outsider in ("beta_viewer", "beta_engineer", "beta_executor"):
        seen = pool(outsider)
        assert seen["current_run_id"] is None and seen["current_phase"] is None, outsider
    assert pool("alpha_viewer")["current_run_id"] == run_id
    assert pool("admin")["current_run_id"] == run_id


def test_protocol_calls_need_the_execute_right(attack: Attack) -> None:
    """The services check ``Action.EXECUTE`` themselves, whatever edge calls them."""
    from lakehouse.services.errors import Forbidden

    run_id, token = _foreign_lease(attack)
    attack.run("alpha_engineer", "alpha", NOOP)
    engineer = Principal(name="alpha_engineer", role="engineer")
    with pytest.raises(Forbidden):
        protocol.claim(attack.ctx, engineer, "sneaky", ["noop"])
    with pytest.raises(Forbidden):
        protocol.complete(attack.ctx, engineer, run_id, token, {})
