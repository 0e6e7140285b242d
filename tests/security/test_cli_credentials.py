"""Attacks on the CLI's stored login (`lakehouse login`): the token in the file is checked against its user
as they are now, is narrower than its user, and is worthless once logged out — against a real
`lakehouse serve`, with the `lakehouse` executable as a user runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lakehouse.services import users
from tests.cli.harness import User, one_line, user_at
from tests.e2e.harness import Server, running_server
from tests.security.conftest import ADMIN, PASSWORD, Attack

pytestmark = pytest.mark.slow
SECRET = "SELECT secret FROM gold.secret"


@pytest.fixture
def server(lake: Attack) -> Iterator[Server]:
    s = lake.ctx.settings
    with running_server(s.home, s.database_url) as running:
        yield running


def _login(u: User, server: Server, name: str) -> str:
    done = u.run("login", "--server", server.base, "--user", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    token: str = json.loads(u.credentials.read_text())["token"]
    return token


def test_a_stored_token_of_a_member_removed_from_the_workspace_cannot_read_it(lake: Attack, server: Server,
                                                                              tmp_path: Path) -> None:
    u = user_at(tmp_path / "alpha_analyst")
    token = _login(u, server, "alpha_analyst")
    before = u.run("sql", SECRET, "--workspace", "alpha")
    assert before.returncode == 0 and "victim-row-4711" in before.stdout, before.stderr  # a member reads it

    users.set_membership(lake.ctx, ADMIN, "alpha_analyst", "alpha", False)

    after = u.run("sql", SECRET, "--workspace", "alpha")
    assert after.returncode != 0 and "victim-row-4711" not in after.stdout + after.stderr
    one_line(after)
    direct = httpx.post(f"{server.base}/api/sql", json={"sql": SECRET, "workspace": "alpha"},
                        headers={"Authorization": f"Bearer {token}"})
    assert direct.status_code in (403, 404) and "victim-row-4711" not in direct.text


def test_a_file_stolen_before_logout_is_useless_after_it(lake: Attack, server: Server, tmp_path: Path) -> None:
    victim = user_at(tmp_path / "victim")
    token = _login(victim, server, "alpha_engineer")
    stolen = victim.credentials.read_bytes()
    # even before logout, the stolen token is narrower than its engineer: it reads, it cannot start runs
    run = httpx.post(f"{server.base}/ops/runs", headers={"Authorization": f"Bearer {token}"}, json={
        "spec_slug": "stolen", "git_sha": "0" * 7, "workspace": "alpha", "phases": [{"name": "p", "type": "noop"}]})
    assert run.status_code == 403, run.text

    assert victim.run("logout").returncode == 0

    thief = user_at(tmp_path / "thief")
    thief.credentials.parent.mkdir(parents=True)
    thief.credentials.write_bytes(stolen)
    thief.credentials.chmod(0o600)
    for args in (("sql", SECRET, "--workspace", "alpha"), ("whoami",)):
        tried = thief.run(*args)
        assert tried.returncode == 1 and "run `lakehouse login` again" in one_line(tried)
        assert "victim-row-4711" not in tried.stdout and token not in tried.stdout + tried.stderr
    for method, path in (("POST", "/api/sql"), ("GET", "/api/tokens/current"), ("GET", "/api/catalog/tables")):
        r = httpx.request(method, f"{server.base}{path}", headers={"Authorization": f"Bearer {token}"},
                          json={"sql": SECRET, "workspace": "alpha"} if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.status_code)
    # and it cannot revoke or mint anything either: minting needs the password
    assert httpx.delete(f"{server.base}/api/tokens/current",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 401
