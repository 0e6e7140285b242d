"""Issue 10 item 5: stored connection secrets must not leave by re-pointing the connection, connection
code reaches only allowed hosts (the SSRF), and a ``sqlite`` connection opens only allowed files.

The "outside" targets (10.255.255.1, 169.254.169.254, …) are refused before any socket is opened:
an audit hook records every ``socket.connect`` and the tests assert none went to them. Nothing here
sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from lakehouse.connectors.netpolicy import EgressPolicy
from lakehouse.domain.principal import Principal
from lakehouse.services import connections
from lakehouse.services.errors import InvalidInput
from lakehouse.store.tables import connections as conn_table
from tests.security.conftest import PASSWORD, Attack
from tests.web.conftest import CSRF_RE, Browser, login

HOOK_SECRET = "Bearer hook-token-4242-secret"
PG_SECRET = "pg-Password-never-leaves"
ROOT = Principal(name="root", role="admin")
OUTSIDE = "10.255.255.1"  # private, not in the default allow-list; never contacted

# --- every socket.connect of this process, while a test listens (audit hooks cannot be removed) ------
_CONNECTS: list[list[Any]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _CONNECTS:
        _CONNECTS[-1].append(args[1])


sys.addaudithook(_audit)


@pytest.fixture
def connects() -> Iterator[list[Any]]:
    """The addresses this process connected a socket to during the test."""
    seen: list[Any] = []
    _CONNECTS.append(seen)
    yield seen
    _CONNECTS.remove(seen)


def _contacted(seen: list[Any], host: str) -> bool:
    return any(isinstance(a, tuple) and str(a[0]) in (host, f"::ffff:{host}") for a in seen)


class _Listener:
    """An HTTP listener on 127.0.0.1 that records the Authorization header of each POST."""

    def __init__(self) -> None:
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.auth.append(self.headers.get("authorization"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listeners() -> Iterator[tuple[_Listener, _Listener]]:
    """(the legitimate webhook receiver, the attacker's listener), both on loopback."""
    good, evil = _Listener(), _Listener()
    yield good, evil
    good.close()
    evil.close()


def _browser(attack: Attack, name: str) -> Browser:
    client = TestClient(attack.client.app)
    assert login(client, name, PASSWORD).status_code == 303
    m = CSRF_RE.search(client.get("/account").text)
    assert m
    return Browser(client, m.group(1))


def _webhook(attack: Attack, url: str, name: str = "alerts") -> int:
    c = connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name=name, type_="webhook",
                           config={"url": url}, secrets={"auth_header": HOOK_SECRET})
    return int(c["id"])


def _postgres(attack: Attack, **config: str) -> int:
    c = connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="odoo", type_="postgres",
                           config={"host": "127.0.0.1", "port": "5432", "database": "odoo", "user": "odoo",
                                   **config}, secrets={"password": PG_SECRET})
    return int(c["id"])


def _point_outside(attack: Attack, conn_id: int, config: dict[str, str]) -> None:
    """A connection stored before the allow-list existed (or before an admin narrowed it)."""
    with attack.ctx.db.write() as conn:
        conn.execute(update(conn_table).where(conn_table.c.id == conn_id).values(config=config))


# --- re-pointing -----------------------------------------------------------------------------------

def test_repointing_connection_requires_reentering_secret(attack: Attack,
                                                          listeners: tuple[_Listener, _Listener]) -> None:
    good, evil = listeners
    hook = _webhook(attack, good.url)
    eng = _browser(attack, "alpha_engineer")
    # the engineer points the webhook at their own listener and leaves the secret field empty …
    r = eng.post(f"/connections/{hook}", {"f_url": evil.url, "f_auth_header": ""})
    assert r.status_code == 422
    assert "re-enter the authorization header value" in r.text and HOOK_SECRET not in r.text
    # … then presses Test: the stored secret went nowhere new
    eng.post(f"/connections/{hook}/test", headers={"HX-Request": "true"})
    assert evil.auth == [] and good.auth == [HOOK_SECRET]
    assert connections.get(attack.ctx, ROOT, hook)["config"]["url"] == good.url
    # the same for PostgreSQL, in the service
    pg = _postgres(attack)
    with pytest.raises(InvalidInput) as err:
        connections.update_connection(attack.ctx, ROOT, pg, config={"host": "localhost", "port": "5432",
                                                                    "database": "odoo", "user": "odoo"}, secrets={})
    assert err.value.code == "secret_reentry_required" and err.value.details["fields"] == ["password"]
    assert "re-enter the password: the connection now points elsewhere" in err.value.message
    for moved in ({"port": "6543"}, {"database": "postgres"}, {"sslmode": "disable"}):
        with pytest.raises(InvalidInput):
            connections.update_connection(attack.ctx, ROOT, pg, config={
                "host": "127.0.0.1", "port": "5432", "database": "odoo", "user": "odoo", **moved}, secrets={})
    assert connections.resolve(attack.ctx, ROOT, pg) == (
        {"host": "127.0.0.1", "port": "5432", "database": "odoo", "user": "odoo", "sslmode": "prefer"},
        {"password": PG_SECRET})


def test_editing_non_target_fields_keeps_the_secret(attack: Attack) -> None:
    pg = _postgres(attack)
    base = {"host": "127.0.0.1", "port": "5432", "database": "odoo"}
    connections.update_connection(attack.ctx, ROOT, pg, config={**base, "user": "reporting"}, secrets={})
    config, secrets = connections.resolve(attack.ctx, ROOT, pg)
    assert config["user"] == "reporting" and secrets == {"password": PG_SECRET}


def test_repointing_with_the_secret_reentered_or_cleared_saves(attack: Attack) -> None:
    pg = _postgres(attack)
    connections.update_connection(attack.ctx, ROOT, pg, config={
        "host": "localhost", "port": "5432", "database": "odoo", "user": "odoo"}, secrets={"password": "new-one"})
    assert connections.resolve(attack.ctx, ROOT, pg)[1] == {"password": "new-one"}
    connections.update_connection(attack.ctx, ROOT, pg, config={
        "host": "127.0.0.1", "port": "5432", "database": "odoo", "user": "odoo"}, secrets={}, clear=["password"])
    assert connections.resolve(attack.ctx, ROOT, pg)[1] == {}


# --- egress allow-list (SSRF) ------------------------------------------------------------------------

def test_connection_test_refuses_host_outside_allow_list(attack: Attack, connects: list[Any]) -> None:
    eng = _browser(attack, "alpha_engineer")
    # saving a target outside the allow-list is refused …
    r = eng.post("/connections", {"type": "trino", "name": "meta", "workspace": "alpha", "environment": "dev",
                                  "f_host": "169.254.169.254", "f_port": "80", "f_user": "x"})
    assert r.status_code == 422 and "egress allow-list" in r.text
    with pytest.raises(InvalidInput) as err:
        connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="inner", type_="postgres",
                           config={"host": OUTSIDE, "database": "x", "user": "u"}, secrets={})
    assert err.value.code == "egress_denied"
    # … and a stored one is refused by Test before any socket is opened to it
    trino = connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="trino",
                               type_="trino", config={"host": "127.0.0.1", "port": "8080", "user": "x"},
                               secrets={"password": PG_SECRET})["id"]
    _point_outside(attack, trino, {"host": OUTSIDE, "port": "8080", "user": "x"})
    with pytest.raises(InvalidInput) as err:
        connections.test_connection(attack.ctx, ROOT, trino, timeout_s=0.5)
    assert err.value.code == "egress_denied" and OUTSIDE in err.value.message
    r = eng.post(f"/connections/{trino}/test", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "s-error" in r.text and "egress allow-list" in r.text
    row = connections.get(attack.ctx, ROOT, trino)
    assert row["last_test_ok"] is False and "egress allow-list" in row["last_test_message"]
    # its secrets are not handed to code that would connect there either (the Trino engine)
    with pytest.raises(InvalidInput) as err:
        connections.resolve(attack.ctx, ROOT, trino)
    assert err.value.code == "egress_denied"
    assert not _contacted(connects, OUTSIDE)


@pytest.mark.parametrize("host", ["167772161", "0x0a.0xff.0xff.1", "::ffff:10.255.255.1", "0.0.0.0",
                                  "169.254.169.254", "/var/run/postgresql"])
def test_connection_to_disguised_internal_address_refused(attack: Attack, connects: list[Any], host: str) -> None:
    with pytest.raises(InvalidInput) as err:
        connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="x", type_="postgres",
                           config={"host": host, "database": "x", "user": "u"}, secrets={"password": PG_SECRET})
    assert err.value.code == "egress_denied"
    assert connects == []


def test_webhook_target_outside_allow_list_refused(attack: Attack, connects: list[Any],
                                                   listeners: tuple[_Listener, _Listener]) -> None:
    good, _ = listeners
    eng = _browser(attack, "alpha_engineer")
    r = eng.post("/connections", {"type": "webhook", "name": "imds", "workspace": "alpha", "environment": "dev",
                                  "f_url": "http://169.254.169.254/latest/meta-data/", "f_auth_header": "x"})
    assert r.status_code == 422 and "egress allow-list" in r.text
    hook = _webhook(attack, good.url)
    # re-entering the secret does not open the door to a host outside the list
    r = eng.post(f"/connections/{hook}", {"f_url": f"http://{OUTSIDE}/hook", "f_auth_header": HOOK_SECRET})
    assert r.status_code == 422 and "egress allow-list" in r.text
    _point_outside(attack, hook, {"url": f"http://{OUTSIDE}:80/hook"})
    with pytest.raises(InvalidInput) as err:
        connections.test_connection(attack.ctx, ROOT, hook, timeout_s=0.5)
    assert err.value.code == "egress_denied"
    assert not _contacted(connects, OUTSIDE) and good.auth == []


def test_loopback_target_in_allow_list_passes(attack: Attack, listeners: tuple[_Listener, _Listener]) -> None:
    good, _ = listeners
    hook = _webhook(attack, good.url.replace("127.0.0.1", "localhost"))
    assert connections.test_connection(attack.ctx, ROOT, hook, timeout_s=5)["ok"] is True
    assert good.auth == [HOOK_SECRET]


def test_admin_widens_allow_list_with_networks_and_names() -> None:
    policy = EgressPolicy.parse(["10.20.0.0/16", "*.hooks.example", "api.example"])
    assert policy.address_allowed("10.20.3.4") and not policy.address_allowed("10.21.0.1")
    assert policy.address_allowed("::ffff:10.20.0.9")
    assert policy.name_allowed("a.hooks.example") and policy.name_allowed("API.example.")
    assert not policy.name_allowed("hooks.example") and not policy.name_allowed("evilapi.example")
    assert policy.check("10.20.0.1", 443).address == "10.20.0.1"  # a literal address needs no DNS


# --- sqlite files --------------------------------------------------------------------------------------

def _sqlite(path: Path) -> Path:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    return path


def test_sqlite_connection_outside_allowed_dirs_refused(attack: Attack, tmp_path: Path) -> None:
    home = attack.ctx.settings.home
    outside = _sqlite(tmp_path / "elsewhere" / "private.db")
    sources = home / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    (sources / "link.db").symlink_to(outside)
    eng = _browser(attack, "alpha_engineer")
    for path in (str(outside), f"{sources}/../../elsewhere/private.db", str(sources / "link.db"),
                 str(home / "secret.key"), "/etc/passwd", "relative.db"):
        r = eng.post("/connections", {"type": "sqlite", "name": "peek", "workspace": "alpha",
                                      "environment": "dev", "f_path": path})
        assert r.status_code == 422, path
        with pytest.raises(InvalidInput) as err:
            connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="peek",
                               type_="sqlite", config={"path": path}, secrets={})
        assert err.value.code in ("path_not_allowed",), path
    # a file swapped for a symlink after it was saved is refused at Test
    inside = _sqlite(sources / "ok.db")
    lite = connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="lite",
                              type_="sqlite", config={"path": str(inside)}, secrets={})["id"]
    assert connections.test_connection(attack.ctx, ROOT, lite)["ok"] is True
    inside.unlink()
    inside.symlink_to(outside)
    with pytest.raises(InvalidInput) as err:
        connections.test_connection(attack.ctx, ROOT, lite)
    assert err.value.code == "path_not_allowed"


def test_sqlite_connection_inside_allowed_dirs_passes(attack: Attack) -> None:
    demo = _sqlite(attack.ctx.settings.home / "demo" / "odoo.db")
    lite = connections.create(attack.ctx, ROOT, workspace="alpha", environment="dev", name="demo",
                              type_="sqlite", config={"path": str(demo)}, secrets={})["id"]
    r = connections.test_connection(attack.ctx, ROOT, lite)
    assert r["ok"] is True and "1 tables" in r["message"]
