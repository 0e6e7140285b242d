"""Connections: create, edit, test for real, secrets encrypted and never shown, key rotation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from typer.testing import CliRunner

from lakehouse.domain.principal import Principal
from lakehouse.services import connections
from lakehouse.services.context import Context, open_context
from lakehouse.services.errors import InvalidInput
from lakehouse.settings import Settings
from lakehouse.store.tables import connections as conn_table
from lakehouse.store.tables import metadata
from tests.conftest import PG_ADMIN
from tests.web.conftest import Browser

SECRET = "s3cr3t-Hunter2-value"
HOOK_SECRET = "Bearer hook-token-98765"
ADMIN = Principal(name="admin", role="admin")


@pytest.fixture
def webhook() -> Iterator[dict[str, Any]]:
    """A real HTTP server on 127.0.0.1 that records what it receives."""
    seen: dict[str, Any] = {"calls": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            seen["calls"].append({"auth": self.headers.get("authorization"), "body": self.rfile.read(length)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield seen
    server.shutdown()
    server.server_close()


def _pg_parts() -> dict[str, str]:
    from sqlalchemy.engine import make_url

    u = make_url(PG_ADMIN)
    return {"host": u.host or "127.0.0.1", "port": str(u.port or 5432), "database": u.database or "postgres",
            "user": u.username or "postgres"}


def _create(b: Browser, type_: str, name: str, fields: dict[str, str]) -> int:
    r = b.post("/connections", {"type": type_, "name": name, "workspace": "default", "environment": "dev",
                                **{f"f_{k}": v for k, v in fields.items()}})
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_connections_end_to_end_and_no_secret_leaks(admin_browser: Browser, ctx: Context, webhook: dict[str, Any],
                                                    tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    b = admin_browser
    # postgres: the real test server (trust auth accepts the password without checking it)
    pg = _create(b, "postgres", "odoo", {**_pg_parts(), "password": SECRET})
    r = b.post(f"/connections/{pg}/test", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "connected to PostgreSQL" in r.text and "s-ok" in r.text
    # sqlite: a real file in an allowed folder ($LAKEHOUSE_HOME/sources by default)
    sources = ctx.settings.home / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    db = sources / "source.db"
    import sqlite3

    sqlite3.connect(db).executescript("CREATE TABLE t (x); CREATE TABLE u (y);")
    lite = _create(b, "sqlite", "files", {"path": str(db)})
    assert "2 tables" in b.post(f"/connections/{lite}/test", headers={"HX-Request": "true"}).text
    # webhook: the secret is sent to the server, and only there
    hook = _create(b, "webhook", "alerts", {"url": webhook["url"], "auth_header": HOOK_SECRET})
    assert "HTTP 204" in b.post(f"/connections/{hook}/test", headers={"HX-Request": "true"}).text
    assert webhook["calls"][0]["auth"] == HOOK_SECRET
    # failures are clear
    bad = _create(b, "postgres", "nowhere", {**_pg_parts(), "port": "1", "password": SECRET})
    r = b.post(f"/connections/{bad}/test", headers={"HX-Request": "true"})
    assert "s-error" in r.text and ("refused" in r.text.lower() or "failed" in r.text.lower())
    missing = _create(b, "sqlite", "gone", {"path": str(sources / "missing.db")})
    assert "no SQLite file at" in b.post(f"/connections/{missing}/test", headers={"HX-Request": "true"}).text
    # edit: an empty secret field keeps the secret; a new value replaces it; settings change
    r = b.post(f"/connections/{pg}", {**{f"f_{k}": v for k, v in _pg_parts().items()}, "f_password": ""})
    assert r.status_code == 303
    assert connections.resolve(ctx, ADMIN, pg)[1] == {"password": SECRET}
    page = b.get(f"/connections/{pg}").text
    assert "••••• set" in page and SECRET not in page
    # validation errors come back as the form, without the secret
    r = b.post("/connections", {"type": "postgres", "name": "Bad Name", "workspace": "default",
                                "environment": "dev", "f_password": SECRET})
    assert r.status_code == 422 and SECRET not in r.text

    # --- the scan: no answer, page, log line, event, audit entry or stored column holds a secret ---
    secrets = (SECRET, HOOK_SECRET, "hook-token-98765")
    answers = [b.get(u).text for u in ("/", "/runs", "/connections", f"/connections/{pg}", f"/connections/{hook}",
                                       "/audit", "/admin/users", "/executors", "/account")]
    for text_ in [*answers, caplog.text]:
        assert not any(s in text_ for s in secrets)
    with ctx.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for col, value in row.items():
                    assert not any(s in str(value) for s in secrets), f"{table.name}.{col} holds a secret"
        stored: str | None = conn.execute(select(conn_table.c.secrets_enc).where(conn_table.c.id == pg)).scalar_one()
    assert stored and stored.startswith("gAAAAA")  # a Fernet token
    for f in ctx.settings.artifacts_dir.rglob("*"):
        if f.is_file():
            assert not any(s.encode() in f.read_bytes() for s in secrets)


def test_redact_replaces_every_secret_value() -> None:
    msg = connections.redact("FATAL: password 'hunter22' for user x; again hunter22", {"password": "hunter22"})
    assert "hunter22" not in msg and msg.count(connections.MASK) == 2


def test_secrets_are_write_only_in_the_service(ctx: Context) -> None:
    c = connections.create(ctx, ADMIN, workspace="default", environment="prod", name="lake", type_="s3",
                           config={"bucket": "b", "endpoint_url": "http://127.0.0.1:9"},
                           secrets={"access_key_id": "AKIA-EXAMPLE", "secret_access_key": SECRET})
    assert c["secrets_set"] == ["access_key_id", "secret_access_key"]
    assert SECRET not in repr(c) and SECRET not in repr(connections.list_connections(ctx, ADMIN))
    with pytest.raises(InvalidInput):  # a secret field given as plain config is refused
        connections.create(ctx, ADMIN, workspace="default", environment="prod", name="x", type_="s3",
                           config={"bucket": "b", "secret_access_key": SECRET}, secrets={})
    r = connections.test_connection(ctx, ADMIN, c["id"], timeout_s=1)
    assert r["ok"] is False and SECRET not in r["message"]


def test_rotate_key_cli_reencrypts(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.cli.main import app

    c = connections.create(ctx, ADMIN, workspace="default", environment="dev", name="pg", type_="postgres",
                           config=_pg_parts(), secrets={"password": SECRET})
    old_key = ctx.settings.secret_key
    with ctx.db.read() as conn:
        before: str = conn.execute(text("SELECT secrets_enc FROM connections")).scalar_one()
    monkeypatch.setenv("LAKEHOUSE_HOME", str(ctx.settings.home))
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.delenv("LAKEHOUSE_SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["secrets", "rotate-key", "--drop-old"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 connection" in result.output
    new_key = (ctx.settings.home / "secret.key").read_text().strip()
    assert new_key != old_key and "," not in new_key
    fresh = open_context(Settings(home=ctx.settings.home, database_url=ctx.settings.database_url))
    try:
        assert connections.resolve(fresh, ADMIN, c["id"])[1] == {"password": SECRET}
        with fresh.db.read() as conn:
            after: str = conn.execute(text("SELECT secrets_enc FROM connections")).scalar_one()
        assert after != before
    finally:
        fresh.db.dispose()
    # the old key alone no longer decrypts
    with pytest.raises(InvalidInput):
        connections.decrypt(ctx, after)
    assert Fernet(new_key.encode()).decrypt(after.encode())


def test_repointing_in_the_form_asks_to_reenter_the_secret(admin_browser: Browser, ctx: Context,
                                                           webhook: dict[str, Any]) -> None:
    b = admin_browser
    pg = _create(b, "postgres", "odoo2", {**_pg_parts(), "password": SECRET})
    page = b.get(f"/connections/{pg}").text
    assert "re-enter its secrets in the same save" in page
    moved = {f"f_{k}": v for k, v in {**_pg_parts(), "host": "localhost"}.items()}
    r = b.post(f"/connections/{pg}", {**moved, "f_password": ""})
    assert r.status_code == 422 and "re-enter the password" in r.text and SECRET not in r.text
    assert connections.resolve(ctx, ADMIN, pg)[0]["host"] == _pg_parts()["host"]
    r = b.post(f"/connections/{pg}", {**moved, "f_password": "another-secret"})
    assert r.status_code == 303
    assert connections.resolve(ctx, ADMIN, pg) == ({**_pg_parts(), "host": "localhost", "sslmode": "prefer"},
                                                   {"password": "another-secret"})
    r = b.post(f"/connections/{pg}/test", headers={"HX-Request": "true"})
    assert "connected to PostgreSQL" in r.text


def test_test_button_shows_an_egress_refusal(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    r = b.post("/connections", {"type": "webhook", "name": "far", "workspace": "default", "environment": "dev",
                                "f_url": "http://192.0.2.1/hook"})
    assert r.status_code == 422 and "egress allow-list" in r.text and "LAKEHOUSE_EGRESS_ALLOW" in r.text
    ctx.settings.egress_allow = [*ctx.settings.egress_allow, "192.0.2.0/24"]  # an admin widens the list …
    hook = _create(b, "webhook", "far", {"url": "http://192.0.2.1/hook"})
    ctx.settings.egress_allow = ["127.0.0.0/8"]  # … and narrows it again: Test refuses before connecting
    r = b.post(f"/connections/{hook}/test", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "s-error" in r.text and "egress allow-list" in r.text
    assert connections.get(ctx, ADMIN, hook)["last_test_ok"] is False
