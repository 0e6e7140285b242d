"""`lakehouse login` / `sql` / `whoami` / `logout` against a real `lakehouse serve`: the stored login is a
private file, `sql` answers through the server with it (loading nothing heavy), logout revokes the
token on the server, and a wrong password, a readable file or a revoked token are one-line errors that
never show the token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from argon2 import PasswordHasher

from lakehouse.cli import credentials
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.lake.tables import write_table
from lakehouse.services import auth
from lakehouse.services import sql as sql_service
from lakehouse.services.context import Context
from tests.cli.harness import User, one_line, user_at
from tests.e2e.harness import Server, running_server

PASSWORD = "correct horse battery"
QUERY = "SELECT month, amount FROM gold.revenue ORDER BY month"
HEAVY = ("duckdb", "pyiceberg", "sqlalchemy", "pyarrow", "fastapi", "pandas", "lakehouse.services",
         "lakehouse.cli.main", "typer", "click", "rich", "httpx", "pydantic")


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the cheapest parameters (the server verifies with the ones in the hash)."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def server(ctx: Context, tmp_path: Path, cheap_hashing: None) -> Iterator[Server]:
    auth.create_user(ctx, "ana", "engineer", PASSWORD)
    write_table(catalog_for(ctx.settings), "gold", "dev", "revenue",
                pa.table({"month": ["2026-01", "2026-02"], "amount": [10.5, 7.25]}))
    close_catalogs()
    with running_server(ctx.settings.home, ctx.settings.database_url) as s:
        yield s


def _logs(ctx: Context) -> str:
    return "".join(p.read_text(errors="replace") for p in ctx.settings.home.glob("server-*.log"))


def _login(u: User, server: Server, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return u.run("login", "--server", server.base, "--user", "ana", "--password-stdin", stdin=password + "\n")


@pytest.mark.slow
def test_login_stores_a_private_file_sql_uses_it_and_logout_revokes_it(ctx: Context, server: Server,
                                                                       tmp_path: Path) -> None:
    u = user_at(tmp_path / "ana")
    done = _login(u, server)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(u.credentials.stat().st_mode) == 0o600
    assert not [p for p in u.credentials.parent.iterdir() if p.name != "credentials.json"]  # no temp file left
    stored = json.loads(u.credentials.read_text())
    token = stored["token"]
    assert stored["server"] == server.base and stored["user"] == "ana" and token.startswith("lh_")
    # the narrowest role that runs SQL, 30 days, named for the Users page
    me = httpx.get(f"{server.base}/api/tokens/current", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["user"] == "ana" and me["role"] == "analyst"
    expires = datetime.fromisoformat(me["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert stored["name"].startswith("lakehouse login · ")
    assert f"Logged in to {server.base} as ana" in done.stdout and "role analyst" in done.stdout

    who = u.run("whoami")
    assert who.returncode == 0 and "ana on " + server.base in who.stdout and "analyst" in who.stdout, who.stderr

    answer = u.run("sql", QUERY)  # LAKEHOUSE_HOME is empty: only the server can answer
    assert answer.returncode == 0, answer.stderr
    assert "2026-02" in answer.stdout and "7.25" in answer.stdout and "2 rows" in answer.stdout
    assert sql_service.search_history(ctx, auth.authenticate_token(ctx, token), limit=1)[0]["sql"] == QUERY

    # the fast path loads nothing heavy: no DuckDB, Iceberg, SQLAlchemy, Arrow, FastAPI, services, nor
    # the CLI framework (Typer, Click, Rich): the standard library and the stored login
    probe = (f"import sys; sys.argv = ['lakehouse', 'sql', {QUERY!r}]\n"
             "from lakehouse.cli.entry import main\n"
             "try:\n    sys.exit(main())\nexcept SystemExit as exc:\n    print('EXIT', exc.code)\n"
             f"print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or "
             f"any(m.startswith(h + '.') or m == h for h in {HEAVY!r})))\n")
    probed = subprocess.run([sys.executable, "-c", probe], env=u.env(), capture_output=True, text=True, timeout=120)
    assert "2026-02" in probed.stdout and "EXIT 0" in probed.stdout, probed.stdout + probed.stderr
    assert "HEAVY []" in probed.stdout, probed.stdout

    stolen = u.credentials.read_bytes()
    out = u.run("logout")
    assert out.returncode == 0 and "token revoked" in out.stdout, out.stdout + out.stderr
    assert not u.credentials.exists()
    refused = httpx.post(f"{server.base}/api/sql", json={"sql": QUERY}, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401  # revoked on the server, not only forgotten here

    # the same file again (a backup, a copy): one line telling to log in again, exit 1
    credentials.save(credentials.Credential(**json.loads(stolen)), u.credentials)
    stale = u.run("sql", QUERY)
    assert stale.returncode == 1 and "run `lakehouse login` again" in one_line(stale)
    assert u.run("whoami").returncode == 1

    seen = [done, who, answer, out, stale, probed]
    assert not [r for r in seen if token in r.stdout + r.stderr]  # never printed
    assert token not in _logs(ctx)  # nor logged by the server


@pytest.mark.slow
def test_a_wrong_password_and_a_readable_file_are_refused_in_one_line(ctx: Context, server: Server,
                                                                      tmp_path: Path) -> None:
    u = user_at(tmp_path / "ana")
    wrong = _login(u, server, password="not the password")
    assert wrong.returncode != 0 and "wrong user name or password" in one_line(wrong)
    assert not [p for p in u.config.rglob("*") if p.is_file()]  # no file, not even a temporary one

    done = _login(u, server)
    assert done.returncode == 0, done.stderr
    token = json.loads(u.credentials.read_text())["token"]
    u.credentials.chmod(0o644)
    for args in (("sql", QUERY), ("whoami",)):
        refused = u.run(*args)
        assert refused.returncode == 1 and f"chmod 600 {u.credentials}" in one_line(refused)
        assert token not in refused.stdout + refused.stderr
    # logging out still works on such a file (and revokes the token)
    assert u.run("logout").returncode == 0 and not u.credentials.exists()
    assert httpx.get(f"{server.base}/api/tokens/current",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert token not in wrong.stdout + wrong.stderr + done.stdout + done.stderr + _logs(ctx)


# --- the file itself, without a server ------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg" / "lakehouse" / "credentials.json"


def test_the_file_is_private_from_its_creation_whatever_the_umask(config: Path) -> None:
    old = os.umask(0o000)
    try:
        where = credentials.save(credentials.Credential(server="http://h", user="u", token="lh_secret"))
    finally:
        os.umask(old)
    assert where == config and stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    loaded = credentials.load()
    assert loaded is not None and loaded.token == "lh_secret" and "lh_secret" not in repr(loaded)


def test_a_file_others_may_read_or_that_is_not_a_login_is_refused(config: Path) -> None:
    assert credentials.load() is None
    credentials.save(credentials.Credential(server="http://h", user="u", token="lh_secret"))
    for mode in (0o644, 0o640, 0o604):
        config.chmod(mode)
        with pytest.raises(credentials.CredentialError, match="chmod 600"):
            credentials.load()
    assert credentials.load(check_mode=False) is not None  # logout still reads it
    config.chmod(0o600)
    config.write_text("{not json")
    with pytest.raises(credentials.CredentialError, match="lakehouse login"):
        credentials.load()
