"""The attacker fixture: two workspaces (``alpha`` and ``beta``), a member of each in every role, an
admin, a shared executor and an executor bound to ``beta`` only, all with API tokens.

Every test in this folder is one attack, named for it; it runs on SQLite and on PostgreSQL (through
the ``ctx`` fixture of tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pyarrow as pa
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.services import auth, runs, users, workspaces
from lakehouse.services.context import Context
from lakehouse.worker.client import ExecutorClient
from lakehouse.worker.loop import Worker
from lakehouse.worker.registry import load_handlers

PASSWORD = "correct horse battery"
WORKSPACES = ("alpha", "beta")
MEMBER_ROLES = ("engineer", "analyst", "viewer")
ADMIN = Principal(name="root", role="admin")


@dataclass
class Attack:
    """The install under attack: ``client`` speaks HTTP to it, ``ctx`` is its service context."""

    ctx: Context
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        """``Authorization`` headers of a user: ``alpha_engineer``, ``beta_viewer``, ``admin``,
        ``executor`` (shared pool) or ``beta_executor`` (bound to ``beta``)."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def run(self, who: str, workspace: str, phases: Sequence[Mapping[str, Any]],
            input_manifest: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Create a run as ``who``; returns the JSON answer (asserting nothing)."""
        r = self.client.post("/ops/runs", headers=self.headers(who), json={
            "spec_slug": extra.pop("spec_slug", "attack"), "git_sha": "0" * 7, "workspace": workspace,
            "phases": phases, "input_manifest": input_manifest or {}, **extra})
        return {"status_code": r.status_code, **r.json()}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with the cheapest parameters: the default costs ~0.7 s a hash on this machine."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def _member(ctx: Context, name: str, role: str, workspace: str) -> None:
    auth.create_user(ctx, name, role, PASSWORD)
    users.set_membership(ctx, ADMIN, name, workspace, True)
    users.set_membership(ctx, ADMIN, name, workspaces.DEFAULT, False)


@pytest.fixture
def attack(ctx: Context) -> Iterator[Attack]:
    for ws in WORKSPACES:
        workspaces.create(ctx, ws)
    tokens: dict[str, str] = {}
    for ws in WORKSPACES:
        for role in MEMBER_ROLES:
            name = f"{ws}_{role}"
            _member(ctx, name, role, ws)
            tokens[name] = auth.create_token(ctx, name)
    auth.create_user(ctx, "admin", "admin", PASSWORD)
    tokens["admin"] = auth.create_token(ctx, "admin")
    auth.create_user(ctx, "executor", "executor", None)
    tokens["executor"] = auth.create_token(ctx, "executor")
    auth.create_user(ctx, "beta_executor", "executor", None)
    users.set_membership(ctx, ADMIN, "beta_executor", "beta", True)
    tokens["beta_executor"] = auth.create_token(ctx, "beta_executor")
    with TestClient(create_app(ctx, reaper=False)) as client:
        yield Attack(ctx=ctx, client=client, tokens=tokens)


# --- the data plane: phases run by a real worker against this install --------------------------------

VICTIM_ROWS = pa.table({"secret": ["victim-row-4711"], "n": [1]})


@pytest.fixture
def lake(attack: Attack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Attack]:
    """Workers read their settings from the environment: point it at this install. The ``default`` and
    ``alpha`` workspaces each hold a ``gold.secret`` table."""
    s = attack.ctx.settings
    for key, value in {"LAKEHOUSE_HOME": str(s.home), "LAKEHOUSE_DATABASE_URL": s.database_url,
                       "LAKEHOUSE_WAREHOUSE": s.warehouse}.items():
        monkeypatch.setenv(key, value)
    catalog = catalog_for(s)
    for ws in ("default", "alpha"):
        lake_tables.write_table(catalog, "gold", "dev", "secret", VICTIM_ROWS, workspace=ws)
    yield attack
    close_catalogs()


def work(attack: Attack, who: str = "executor") -> int:
    """Run every runnable phase with a real worker (handlers from the entry points) until none is left."""
    client = ExecutorClient("http://testserver", attack.tokens[who])
    client.http.close()
    # a TestClient (httpx2) speaks the httpx.Client API the executor client uses
    client.http = cast(httpx.Client, TestClient(attack.client.app,
                                                headers={"Authorization": f"Bearer {attack.tokens[who]}"}))
    worker = Worker(client, executor_id=f"attack-{who}", handlers=load_handlers(), wait_s=0, once=True)
    return worker.run()


def run_of(attack: Attack, run_id: str) -> dict[str, Any]:
    return runs.get_run(attack.ctx, run_id, SYSTEM)
