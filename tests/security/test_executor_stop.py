"""Issue 11 §5: executors that stop cleanly say so (``POST /ops/executors/{id}/stopped``) and admins
forget old ones (``DELETE /ops/executors/{id}``, audited). Each test is one attack (SQLite and
PostgreSQL): the id in the path proves nothing — only the account whose claim registered it may say
it stopped — and only admins forget."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from lakehouse.domain.principal import Principal
from lakehouse.services import executors
from lakehouse.services.errors import Forbidden
from lakehouse.store.tables import audit_log
from tests.security.conftest import Attack

NOOP = [{"name": "p0", "type": "noop"}]


def register(attack: Attack, who: str, executor_id: str, run_id: str | None = None) -> None:
    """``who`` claims under ``executor_id`` (registering it), optionally one run's phase."""
    path = f"/ops/runs/{run_id}/claim" if run_id else "/ops/claim"
    r = attack.client.post(path, headers=attack.headers(who), json={"executor_id": executor_id,
                                                                     "capabilities": ["noop"]})
    assert r.status_code in (200, 204), r.text


def stopped(attack: Attack, who: str, executor_id: str, reason: str = "SIGTERM") -> Any:
    return attack.client.post(f"/ops/executors/{executor_id}/stopped", headers=attack.headers(who),
                              json={"reason": reason})


def listed(attack: Attack, who: str = "admin") -> dict[str, dict[str, Any]]:
    rows = attack.client.get("/ops/executors", headers=attack.headers(who)).json()["executors"]
    return {r["executor_id"]: r for r in rows}


def test_an_executor_cannot_mark_another_accounts_executor_stopped(attack: Attack) -> None:
    register(attack, "executor", "pool-1")
    register(attack, "beta_executor", "beta-1")
    for who, victim in (("beta_executor", "pool-1"), ("executor", "beta-1")):
        r = stopped(attack, who, victim, "forged goodbye")
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_executor", r.text
    assert {e: r["state"] for e, r in listed(attack).items()} == {"pool-1": "online", "beta-1": "online"}
    # its own: fine, and shown as stopped (not stale) with its reason
    assert stopped(attack, "beta_executor", "beta-1").json() == {
        "executor_id": "beta-1", "state": "stopped", "stop_reason": "SIGTERM"}
    row = listed(attack)["beta-1"]
    assert row["state"] == "stopped" and row["stop_reason"] == "SIGTERM" and not row["stale"]


def test_an_unknown_or_reused_id_gives_no_foothold(attack: Attack) -> None:
    """An id nobody registered is 404; claiming under another account's id does not take it over."""
    r = stopped(attack, "executor", "never-seen")
    assert r.status_code == 404 and r.json()["error"]["code"] == "executor_not_found"
    register(attack, "executor", "pool-1")
    register(attack, "beta_executor", "pool-1")  # the attacker now claims under the victim's id
    assert stopped(attack, "beta_executor", "pool-1").status_code == 403
    assert stopped(attack, "executor", "pool-1").status_code == 200


def test_users_cannot_mark_executors_stopped(attack: Attack) -> None:
    register(attack, "executor", "pool-1")
    for who in ("alpha_viewer", "alpha_analyst", "beta_engineer"):
        r = stopped(attack, who, "pool-1")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (who, r.text)
    assert listed(attack)["pool-1"]["state"] == "online"


def test_only_admins_forget_executors_and_it_is_audited(attack: Attack) -> None:
    register(attack, "executor", "pool-1")
    assert stopped(attack, "executor", "pool-1").status_code == 200
    for who in ("alpha_viewer", "beta_engineer", "alpha_analyst", "executor", "beta_executor"):
        r = attack.client.delete("/ops/executors/pool-1", headers=attack.headers(who))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (who, r.text)
    assert "pool-1" in listed(attack)
    r = attack.client.delete("/ops/executors/pool-1", headers=attack.headers("admin"))
    assert r.status_code == 200 and r.json() == {"forgotten": ["pool-1"]}
    assert "pool-1" not in listed(attack)
    with attack.ctx.db.read() as conn:
        trail = conn.execute(select(audit_log.c.action, audit_log.c.object_id)
                             .where(audit_log.c.action == "executor.forget")).all()
    assert [tuple(t) for t in trail] == [("executor.forget", "pool-1")]
    r = attack.client.delete("/ops/executors/pool-1", headers=attack.headers("admin"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "executor_not_found"


def test_an_executor_holding_a_lease_is_not_forgotten(attack: Attack) -> None:
    alpha = attack.run("alpha_engineer", "alpha", NOOP)
    register(attack, "executor", "pool-1", str(alpha["run_id"]))
    r = attack.client.delete("/ops/executors/pool-1", headers=attack.headers("admin"))
    assert r.status_code == 404
    assert listed(attack)["pool-1"]["current_run_id"] == alpha["run_id"]


def test_beta_executor_sees_nothing_of_alphas_work_in_the_registry(attack: Attack) -> None:
    """The shared pool works on an alpha run: beta's executor sees the executor, never the run."""
    alpha = attack.run("alpha_engineer", "alpha", NOOP)
    register(attack, "executor", "pool-1", str(alpha["run_id"]))
    r = attack.client.get("/ops/executors", headers=attack.headers("beta_executor"))
    row = {e["executor_id"]: e for e in r.json()["executors"]}["pool-1"]
    assert row["current_run_id"] is None and row["current_phase"] is None
    assert str(alpha["run_id"]) not in r.text
    assert listed(attack, "alpha_viewer")["pool-1"]["current_run_id"] == alpha["run_id"]


def test_the_services_refuse_a_viewer_forgetting_executors_whatever_the_edge(attack: Attack) -> None:
    """The Control Room's Forget button and the API both end in ``executors.forget``: it checks the role."""
    register(attack, "executor", "pool-1")
    for role in ("viewer", "analyst", "engineer", "executor"):
        with pytest.raises(Forbidden):
            executors.forget(attack.ctx, Principal(name=f"a-{role}", role=role), executor_id="pool-1")
    assert "pool-1" in listed(attack)
