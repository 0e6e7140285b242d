"""Fixtures for the Control Room: users of every role, browser-like sessions, a foreign workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.services import auth, users, workspaces
from lakehouse.services.context import Context

PASSWORD = "correct horse battery"
ROLES = ("admin", "engineer", "analyst", "viewer")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    """A TestClient with its own cookie jar, logged in as one user."""

    client: TestClient
    csrf: str

    def get(self, url: str, **kw):  # type: ignore[no-untyped-def]
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, str] | None = None, **kw):  # type: ignore[no-untyped-def]
        body = {"csrf_token": self.csrf, **(data or {})}
        kw.setdefault("follow_redirects", False)
        return self.client.post(url, data=body, **kw)


def login(client: TestClient, name: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
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
def app(ctx: Context):  # type: ignore[no-untyped-def]
    return create_app(ctx, reaper=False)


@pytest.fixture
def people(ctx: Context) -> dict[str, str]:
    """One user per role in the default workspace (name == role)."""
    for role in ROLES:
        auth.create_user(ctx, role, role, PASSWORD)
    auth.create_user(ctx, "bot", "executor", PASSWORD)
    return {r: r for r in ROLES}


@pytest.fixture
def browser_for(app, people) -> Iterator:  # type: ignore[no-untyped-def]
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
def admin_browser(browser_for) -> Browser:  # type: ignore[no-untyped-def]
    return browser_for("admin")


@pytest.fixture
def anon(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    yield c
    c.close()


@pytest.fixture
def outsider(ctx: Context, people, browser_for) -> Browser:  # type: ignore[no-untyped-def]
    """An engineer who is a member of workspace ``other`` only."""
    workspaces.create(ctx, "other")
    admin = auth.Principal(name="admin", role="admin")
    auth.create_user(ctx, "mallory", "engineer", PASSWORD)
    users.set_membership(ctx, admin, "mallory", "other", True)
    users.set_membership(ctx, admin, "mallory", "default", False)
    return browser_for("mallory")  # type: ignore[no-any-return]
