"""The metadata database failing under a real `lakehouse serve` + workers: connections terminated
mid-transaction, the database host gone for a while, the database not there yet at start-up.

The server must answer 503 with ``Retry-After`` (never a 500) while the database is away, recover
by itself, and lose or repeat no phase (a ledger written by the phases proves it).
"""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.harness import Server, free_port, lakehouse, running_server, spawn_worker, stop, wait_for
from tests.faults.conftest import TcpProxy, backends_in_transaction, make_tokens, terminate_backends, via

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FAST = {"lease_ttl_s": 5, "reaper_interval_s": 0.2, "retry_base_s": 0.05, "retry_max_s": 0.2}


def ledger_runs(http: httpx.Client, ledger: Path, runs: int, phases: int) -> list[str]:
    body = {"spec_slug": "faults", "git_sha": "g", "phases": [
        {"name": f"p{i}", "type": "python", "params": {
            "callable": "lakehouse.handlers.samples:record_execution", "args": {"path": str(ledger)}}}
        for i in range(phases)]}
    return [_retry(lambda: http.post("/ops/runs", json=body)).json()["run_id"] for _ in range(runs)]


def _retry(call: Any, attempts: int = 50) -> httpx.Response:
    for _ in range(attempts):
        r = call()
        if r.status_code != 503:
            r.raise_for_status()
            return r  # type: ignore[no-any-return]
        time.sleep(float(r.headers["Retry-After"]) / 10)
    raise AssertionError("the server stayed unavailable")


class Poller(threading.Thread):
    """A client reading all the time: every answer is recorded."""

    def __init__(self, http: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.http = http
        self.halt = threading.Event()
        self.answers: collections.Counter[int] = collections.Counter()
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                r = self.http.get("/ops/runs", params={"limit": 5})
            except httpx.HTTPError:
                continue
            self.answers[r.status_code] += 1
            if r.status_code >= 500 and not (r.status_code == 503 and r.headers.get("Retry-After")
                                             and r.json()["error"]["code"] == "database_unavailable"):
                self.bad.append(f"{r.status_code} {r.headers} {r.text[:300]}")
            time.sleep(0.02)


def check_exactly_once(http: httpx.Client, ledger: Path, run_ids: list[str], phases: int) -> None:
    lines = ledger.read_text().splitlines()
    counts = collections.Counter(tuple(ln.split()[:2]) for ln in lines)
    assert len(counts) == len(run_ids) * phases, "a phase was lost"
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1][:5]
    for rid in run_ids:
        events = _retry(lambda rid=rid: http.get(f"/ops/runs/{rid}/events")).json()["events"]
        types = collections.Counter(e["type"] for e in events)
        assert types["RUN_CREATED"] == 1 and types["RUN_SUCCEEDED"] == 1, types
        assert types["PHASE_SUCCEEDED"] == phases, types
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a gap in the event trail"


def test_terminated_connections_mid_transaction_lose_and_repeat_nothing(fresh_pg: str, tmp_path: Path) -> None:
    dbname = make_url(fresh_pg).database
    assert dbname
    eng, executor = make_tokens(tmp_path / "home", fresh_pg)
    ledger = tmp_path / "ledger.txt"
    with running_server(tmp_path / "home", fresh_pg, processes=2, **FAST) as server:
        http = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {eng}"}, timeout=30)
        run_ids = ledger_runs(http, ledger, runs=10, phases=6)
        poller = Poller(http)
        poller.start()
        workers = [spawn_worker(server, executor, f"w{i}", tmp_path) for i in range(2)]
        rounds = mid_transaction = 0
        started = time.monotonic()
        try:
            def done() -> bool:
                r = http.get("/ops/runs", params={"status": "succeeded", "limit": 500})
                return r.status_code == 200 and len(r.json()["runs"]) == len(run_ids)

            while rounds < 8 and not done():
                deadline = time.monotonic() + 2  # catch the server inside a transaction
                while backends_in_transaction(dbname) == 0 and time.monotonic() < deadline:
                    pass
                _, in_tx = terminate_backends(dbname)
                rounds += 1
                mid_transaction += in_tx
                time.sleep(0.3)
            wait_for(done, timeout=240, interval=0.5, what="every run to succeed after the faults")
        finally:
            poller.halt.set()
            stop(workers)
        poller.join(5)
        print("fault rounds", rounds, "mid-transaction kills", mid_transaction, "answers", dict(poller.answers),
              "took", round(time.monotonic() - started, 1))
        assert rounds >= 3 and mid_transaction >= 1, (rounds, mid_transaction)
        assert not poller.bad, poller.bad[:3]
        assert poller.answers[200] > 0
        check_exactly_once(http, ledger, run_ids, phases=6)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").glob("server-*.log"))
    assert "unhandled error" not in logs


def test_database_away_gives_503_then_the_server_recovers(fresh_pg: str, pg_proxy: TcpProxy, tmp_path: Path
                                                           ) -> None:
    eng, executor = make_tokens(tmp_path / "home", fresh_pg)
    ledger = tmp_path / "ledger.txt"
    pg_proxy.up()
    with running_server(tmp_path / "home", via(fresh_pg, pg_proxy), processes=1, **FAST) as server:
        http = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {eng}"}, timeout=30)
        run_ids = ledger_runs(http, ledger, runs=5, phases=4)
        workers = [spawn_worker(server, executor, "w0", tmp_path)]
        try:
            pg_proxy.down()
            seen = [http.get("/ops/runs").status_code for _ in range(3)]
            r = http.get(f"/ops/runs/{run_ids[0]}")
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "2"
            assert r.json()["error"]["code"] == "database_unavailable"
            w = http.post("/ops/runs", json={"spec_slug": "x", "git_sha": "g",
                                             "phases": [{"name": "a", "type": "noop"}]})
            assert w.status_code == 503 and w.headers["Retry-After"], w.text
            assert set(seen) == {503}
            time.sleep(1)
            pg_proxy.up()
            wait_for(lambda: http.get("/health").status_code == 200, 30, what="the server to recover")
            wait_for(lambda: len(http.get("/ops/runs", params={"status": "succeeded"}).json()["runs"]) == 5,
                     timeout=120, interval=0.5, what="the runs to finish after the database came back")
        finally:
            stop(workers)
        check_exactly_once(http, ledger, run_ids, phases=4)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").glob("server-*.log"))
    assert "unhandled error" not in logs


def _start_serve(home: Path, url: str, wait_s: float) -> tuple[Server, subprocess.Popen[bytes]]:
    import os

    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_DATABASE_URL": url,
           "LAKEHOUSE_DATABASE_WAIT_S": str(wait_s), "LAKEHOUSE_PROCESSES": "1"}
    server = Server(env, free_port(), home)
    with (home / "serve.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(lakehouse("serve", "--port", str(server.port)), env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    server.proc = proc
    return server, proc


def test_server_waits_for_a_database_that_comes_up_late(fresh_pg: str, pg_proxy: TcpProxy, tmp_path: Path) -> None:
    server, proc = _start_serve(tmp_path / "home", via(fresh_pg, pg_proxy), wait_s=60)
    try:
        wait_for(lambda: "not reachable yet" in (tmp_path / "home" / "serve.log").read_text(), 60,
                 what="the server to report it is waiting")
        assert proc.poll() is None
        pg_proxy.up()
        wait_for(lambda: _healthy(server.base), 90, interval=0.2, what="the server to come up")
    finally:
        server.kill()


def test_server_gives_up_after_the_wait_with_one_clear_line(fresh_pg: str, pg_proxy: TcpProxy, tmp_path: Path
                                                            ) -> None:
    _, proc = _start_serve(tmp_path / "home", via(fresh_pg, pg_proxy), wait_s=1)
    assert proc.wait(60) == 1
    out = (tmp_path / "home" / "serve.log").read_text()
    assert "cannot reach the metadata database" in out
    assert "Traceback" not in out


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
