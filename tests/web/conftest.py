"""Fixtures for the Control Room: users of every role, browser-like sessions, a foreign workspace."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.domain.principal import Principal
from lakehouse.services import auth, users, workspaces
from lakehouse.services.context import Context
from tests.e2e.harness import running_server, stop

if TYPE_CHECKING:
    from httpx2 import Response  # what starlette's TestClient answers with (it is typed against httpx2)

PASSWORD = "correct horse battery"
ROLES = ("admin", "engineer", "analyst", "viewer")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CHROMIUM = Path("/usr/bin/chromium")
SPEC = """name: hello_gold
version: 1
description: The smallest pipeline; one SQL transform into gold.
transforms:
  - {name: greeting, sql: greeting.sql, output: gold.greeting, keys: [id]}
  - {name: loud, sql: loud.sql, output: gold.loud_greeting, keys: [id]}
checks:
  - {table: gold.greeting, type: row_count, min: 1}
"""


@dataclass
class Browser:
    """A TestClient with its own cookie jar, logged in as one user."""

    client: TestClient
    csrf: str

    def get(self, url: str, **kw: Any) -> Response:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> Response:
        body = {"csrf_token": self.csrf, **(data or {})}
        kw.setdefault("follow_redirects", False)
        return self.client.post(url, data=body, **kw)


def csrf_of(html: str) -> str:
    """The CSRF token a page's form carries."""
    m = CSRF_RE.search(html)
    assert m, html
    return m.group(1)


BrowserFor = Callable[[str], Browser]  # the browser_for fixture: a logged-in browser for a user name


def login(client: TestClient, name: str, password: str = PASSWORD) -> Response:
    page = client.get("/login")
    token = CSRF_RE.search(page.text)
    assert token, page.text
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token.group(1)},
                       follow_redirects=False)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with the cheapest parameters: the default costs ~0.7 s a hash on this machine."""
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def app(ctx: Context) -> FastAPI:
    return create_app(ctx, reaper=False)


@pytest.fixture
def people(ctx: Context) -> dict[str, str]:
    """One user per role in the default workspace (name == role)."""
    for role in ROLES:
        auth.create_user(ctx, role, role, PASSWORD)
    auth.create_user(ctx, "bot", "executor", PASSWORD)
    return {r: r for r in ROLES}


@pytest.fixture
def browser_for(app: FastAPI, people: dict[str, str]) -> Iterator[BrowserFor]:
    clients: list[TestClient] = []

    def make(name: str) -> Browser:
        c = TestClient(app)  # no lifespan: no Postgres listener per browser (the waker is in-process)
        clients.append(c)
        r = login(c, name)
        assert r.status_code == 303, r.text
        home = c.get("/account")
        m = CSRF_RE.search(home.text)
        assert m
        return Browser(c, m.group(1))

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def admin_browser(browser_for: BrowserFor) -> Browser:
    return browser_for("admin")


@pytest.fixture
def anon(app: FastAPI) -> Iterator[TestClient]:
    c = TestClient(app)
    yield c
    c.close()


@pytest.fixture
def outsider(ctx: Context, people: dict[str, str], browser_for: BrowserFor) -> Browser:
    """An engineer who is a member of workspace ``other`` only."""
    workspaces.create(ctx, "other")
    admin = Principal(name="admin", role="admin")
    auth.create_user(ctx, "mallory", "engineer", PASSWORD)
    users.set_membership(ctx, admin, "mallory", "other", True)
    users.set_membership(ctx, admin, "mallory", "default", False)
    return browser_for("mallory")


# --- the browser tests (Playwright on Debian's chromium against a real `lakehouse serve`) -------------

@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A real `lakehouse serve` with the hello_gold pipeline, an admin (ada), a viewer (vera) and an
    executor token; workers are started by the test (``spawn_worker``) into ``workers``."""
    if os.environ.get("LAKEHOUSE_SKIP_BROWSER") == "1":
        pytest.skip("LAKEHOUSE_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need /usr/bin/chromium: run `bash scripts/browser-deps.sh` (make test does)")
    pipes = tmp_path / "pipelines"
    pipes.mkdir()
    (pipes / "hello.yaml").write_text(SPEC)
    (pipes / "greeting.sql").write_text("SELECT 1 AS id, 'hello' AS greeting UNION ALL SELECT 2, 'world'\n")
    (pipes / "loud.sql").write_text("SELECT id, upper(greeting) AS greeting FROM gold.greeting\n")
    auth.create_user(ctx, "ada", "admin", PASSWORD)
    auth.create_user(ctx, "vera", "viewer", PASSWORD)
    auth.create_user(ctx, "bot", "executor", None)
    exec_token = auth.create_token(ctx, "bot")
    with running_server(ctx.settings.home, ctx.settings.database_url, pipelines_dir=pipes,
                        secret_key=ctx.settings.secret_key) as server:
        workers: list[Any] = []
        yield {"server": server, "exec_token": exec_token, "workers": workers, "logs": tmp_path}
        stop(workers)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium (never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield b
        b.close()
