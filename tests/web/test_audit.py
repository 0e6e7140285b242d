"""The audit log: logins and changes recorded with their address; tampering is detected."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from lakehouse.services import audit
from lakehouse.services.context import Context
from lakehouse.store.tables import audit_log
from tests.web.conftest import Browser, login

RUN = {"spec_slug": "demo", "git_sha": "abc", "phases": [{"name": "a", "type": "noop"}]}


def _entries(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()]


def test_logins_and_changes_are_recorded(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    login(b.client.__class__(b.client.app), "viewer", "wrong password")
    run_id = b.client.post("/ops/runs", json=RUN, headers={"X-CSRF-Token": b.csrf}).json()["run_id"]
    assert b.post(f"/runs/{run_id}/cancel").status_code == 303
    b.post("/logout")
    got = [(e["actor"], e["action"], e["object_id"], e["address"]) for e in _entries(ctx)
           if e["action"] in ("login", "login.failed", "run.create", "run.cancel", "logout")]
    assert got == [("admin", "login", "admin", "testclient"), ("viewer", "login.failed", "viewer", "testclient"),
                   ("admin", "run.create", run_id, None), ("admin", "run.cancel", run_id, None),
                   ("admin", "logout", "admin", "testclient")]


def test_audit_page_filters_and_verifies(admin_browser: Browser, ctx: Context) -> None:
    page = admin_browser.get("/audit?action=login")
    assert page.status_code == 200 and "<code>login</code>" in page.text and "user.create" not in page.text
    assert "The chain is intact" in admin_browser.get("/audit?verify=1").text


@pytest.mark.parametrize("tamper", ["edit", "delete"])
def test_tampering_is_detected(tamper: str, admin_browser: Browser, ctx: Context,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.cli.main import app

    entries = _entries(ctx)
    assert len(entries) >= 4
    victim = entries[2]["id"]
    with ctx.db.write() as conn:
        audit.seal(conn)  # the server's maintenance loop seals every second
    with ctx.db.write() as conn:
        assert audit.verify(conn) == (True, None)
        if tamper == "edit":
            conn.execute(update(audit_log).where(audit_log.c.id == victim).values(actor="someone-else"))
        else:
            conn.execute(delete(audit_log).where(audit_log.c.id == victim))
    with ctx.db.read() as conn:
        ok, bad = audit.verify(conn)
    assert not ok and bad == (victim if tamper == "edit" else entries[3]["id"])
    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 1 and f"audit chain broken at entry {bad}" in result.output
    assert f"broken at entry {bad}" in admin_browser.get("/audit?verify=1").text


def test_audit_cli_ok(ctx: Context, admin_browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.cli.main import app

    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 0 and "audit chain intact" in result.output
    result = CliRunner().invoke(app, ["audit", "list", "--action", "login"])
    assert result.exit_code == 0 and "\tadmin\tlogin\t" in result.output


def test_entries_written_concurrently_are_all_sealed_into_one_chain(ctx: Context) -> None:
    """Writers append without a lock; the sealer chains every committed entry exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    from lakehouse.domain.principal import SYSTEM

    def write(i: int) -> None:
        with ctx.db.write() as conn:
            audit.record(conn, ctx.clock(), SYSTEM, "test.write", "thing", str(i), None, {"i": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(40)))
    assert audit.seal_pending(ctx) >= 0
    assert audit.seal_pending(ctx) == 0  # nothing left to seal
    result = audit.verify_chain(ctx, SYSTEM)
    assert result["ok"], result
    rows = _entries(ctx)
    assert all(r["seq"] is not None and r["hash"] for r in rows)
    assert sorted(r["seq"] for r in rows) == sorted({r["seq"] for r in rows})  # unique
    assert {r["object_id"] for r in rows if r["action"] == "test.write"} == {str(i) for i in range(40)}
