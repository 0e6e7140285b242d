"""Issue 10 item 6: login limits that hold under concurrency, per (account, address), behind proxies.

The concurrent attacks run 30 logins in threads against the service, released together by a barrier;
each password check is slowed down so that every attempt is in flight at once (no timing is asserted).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lakehouse.api.app import create_app
from lakehouse.domain.principal import Principal
from lakehouse.services import auth, sessions
from lakehouse.services.errors import Forbidden, RateLimited, Unauthorized
from lakehouse.store.tables import audit_log
from tests.security.conftest import PASSWORD, Attack

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
WRONG = "not the password"


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password actually checked (the user names), each check held long enough to overlap."""
    seen: list[str] = []
    lock = threading.Lock()
    verify = auth.verify_password

    def slow_verify(stored: str | None, password: str) -> bool:
        with lock:
            seen.append(password)
        time.sleep(0.05)
        return verify(stored, password)

    monkeypatch.setattr(auth, "verify_password", slow_verify)
    return seen


def _together(n: int, attempt: Callable[[int], object]) -> list[object]:
    barrier = threading.Barrier(n)

    def one(i: int) -> object:
        barrier.wait()
        try:
            return attempt(i)
        except (Unauthorized, RateLimited, Forbidden) as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_wrong_passwords_check_at_most_the_limit(attack: Attack, checks: list[str]) -> None:
    results = _together(30, lambda i: sessions.login(attack.ctx, "alpha_viewer", f"{WRONG} {i}", "198.51.100.7"))
    assert len(checks) <= sessions.FREE_FAILURES
    assert sum(isinstance(r, Unauthorized) for r in results) == len(checks)
    assert all(isinstance(r, Unauthorized | RateLimited) for r in results)
    with attack.ctx.db.read() as conn:
        failed = conn.execute(select(audit_log).where(audit_log.c.action == "login.failed")).all()
    assert len(failed) <= sessions.FREE_FAILURES


def test_concurrent_wrong_passwords_across_accounts_check_at_most_the_address_limit(
        attack: Attack, checks: list[str]) -> None:
    results = _together(30, lambda i: sessions.login(attack.ctx, f"user{i}", WRONG, "198.51.100.8"))
    assert sum(isinstance(r, Unauthorized) for r in results) <= sessions.MAX_ADDRESS_FAILURES
    assert sum(isinstance(r, RateLimited) for r in results) >= 30 - sessions.MAX_ADDRESS_FAILURES


def test_failures_from_one_address_do_not_lock_the_account_for_another(attack: Attack) -> None:
    for _ in range(sessions.FREE_FAILURES):
        with pytest.raises(Unauthorized):
            sessions.login(attack.ctx, "admin", WRONG, "203.0.113.66")
    with pytest.raises(RateLimited) as locked:
        sessions.login(attack.ctx, "admin", PASSWORD, "203.0.113.66")
    assert locked.value.code == "locked_out"
    _value, session = sessions.login(attack.ctx, "admin", PASSWORD, "192.0.2.10")
    assert session.principal.name == "admin"


def test_each_further_failure_doubles_the_delay(attack: Attack) -> None:
    now = [datetime(2026, 12, 3, 12, 0, tzinfo=UTC)]
    attack.ctx.clock = lambda: now[0]
    for _ in range(sessions.FREE_FAILURES):
        with pytest.raises(Unauthorized):
            sessions.login(attack.ctx, "alpha_viewer", WRONG, "203.0.113.7")
    for delay in (1, 2, 4):
        with pytest.raises(RateLimited) as locked:
            sessions.login(attack.ctx, "alpha_viewer", PASSWORD, "203.0.113.7")
        assert locked.value.details == {"retry_after_s": delay * 60}
        now[0] += timedelta(minutes=delay)
        with pytest.raises(Unauthorized):  # the lock is over: one more try, then twice as long
            sessions.login(attack.ctx, "alpha_viewer", WRONG, "203.0.113.7")
    assert sessions.delay_after(50) == sessions.MAX_DELAY


def _login_over_http(client: TestClient, name: str, password: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    found = CSRF_RE.search(client.get("/login").text)
    assert found
    token = found.group(1)
    client.cookies.delete("lh_session")
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": token},
                    headers=headers, follow_redirects=False)
    return r.status_code


def _client(attack: Attack, peer: str) -> TestClient:
    attack.ctx.settings.trusted_proxies = ["10.0.0.0/8"]
    return TestClient(create_app(attack.ctx, reaper=False), client=(peer, 40000))


def test_forwarded_for_from_an_untrusted_peer_is_ignored(attack: Attack) -> None:
    attacker = _client(attack, "203.0.113.5")
    # a fresh made-up client address on every try would escape the limits if the header were believed
    for i in range(sessions.FREE_FAILURES):
        assert _login_over_http(attacker, "alpha_analyst", WRONG, f"198.51.100.{i + 1}") == 401
    assert _login_over_http(attacker, "alpha_analyst", PASSWORD, "198.51.100.99") == 429
    with attack.ctx.db.read() as conn:
        rows = conn.execute(select(audit_log.c.address).where(audit_log.c.action == "login.failed"))
        addresses: set[str | None] = set(rows.scalars())
    assert addresses == {"203.0.113.5"}


def test_forwarded_for_from_a_trusted_proxy_is_honoured(attack: Attack) -> None:
    proxy = _client(attack, "10.1.2.3")
    for _ in range(sessions.FREE_FAILURES):
        assert _login_over_http(proxy, "alpha_analyst", WRONG, "203.0.113.5, 10.9.9.9") == 401
    assert _login_over_http(proxy, "alpha_analyst", PASSWORD, "203.0.113.5, 10.9.9.9") == 429
    # another client behind the same proxy is neither locked out nor counted with the attacker
    assert _login_over_http(proxy, "alpha_analyst", PASSWORD, "192.0.2.44") == 303
    with attack.ctx.db.read() as conn:
        rows = conn.execute(select(audit_log.c.address).where(audit_log.c.action.like("login%")))
        addresses: set[str | None] = set(rows.scalars())
    assert addresses == {"203.0.113.5", "192.0.2.44"}


def test_admin_unlock_clears_the_lock(attack: Attack) -> None:
    for _ in range(sessions.FREE_FAILURES):
        with pytest.raises(Unauthorized):
            sessions.login(attack.ctx, "alpha_viewer", WRONG, "203.0.113.9")
    with pytest.raises(RateLimited):
        sessions.login(attack.ctx, "alpha_viewer", PASSWORD, "203.0.113.9")
    r = attack.client.post("/api/users/alpha_viewer/unlock", headers=attack.headers("admin"))
    assert r.status_code == 200 and r.json() == {"user": "alpha_viewer", "cleared": 1}
    sessions.login(attack.ctx, "alpha_viewer", PASSWORD, "203.0.113.9")
    with attack.ctx.db.read() as conn:
        unlocks = conn.execute(select(audit_log.c.actor, audit_log.c.object_id).where(
            audit_log.c.action == "user.unlock")).all()
    assert [tuple(u) for u in unlocks] == [("admin", "alpha_viewer")]
    assert attack.client.post("/api/users/nobody/unlock", headers=attack.headers("admin")).status_code == 404


def test_non_admin_cannot_unlock(attack: Attack) -> None:
    for _ in range(sessions.FREE_FAILURES):
        with pytest.raises(Unauthorized):
            sessions.login(attack.ctx, "alpha_viewer", WRONG, "203.0.113.9")
    for who in ("alpha_engineer", "beta_engineer", "alpha_viewer", "executor"):
        r = attack.client.post("/api/users/alpha_viewer/unlock", headers=attack.headers(who))
        assert r.status_code == 403, who
    with pytest.raises(Forbidden):
        sessions.unlock(attack.ctx, Principal(name="alpha_engineer", role="engineer"), "alpha_viewer")
    with pytest.raises(RateLimited):
        sessions.login(attack.ctx, "alpha_viewer", PASSWORD, "203.0.113.9")
