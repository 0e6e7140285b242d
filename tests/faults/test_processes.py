"""`lakehouse serve --processes 2` on PostgreSQL: one port, several processes, one leader.

SSE streams and long-polls work whichever process a client reaches (wake-ups travel by NOTIFY), the
reaper/scheduler run in exactly one process (the advisory-lock leader lease), and when the leader
dies another process takes the lease over.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN
from tests.e2e.harness import running_server, spawn_worker, stop, wait_for
from tests.faults.conftest import make_tokens

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def leaders(dbname: str) -> list[int]:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'lakehouse-leader'",
            (dbname,)).fetchall()]


def server_children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return [k for k in kids if "spawn_main" in Path(f"/proc/{k}/cmdline").read_text()]


def test_two_processes_share_the_port_with_one_leader(fresh_pg: str, tmp_path: Path) -> None:
    dbname = make_url(fresh_pg).database
    assert dbname
    eng, executor = make_tokens(tmp_path / "home", fresh_pg)
    with running_server(tmp_path / "home", fresh_pg, processes=2, lease_ttl_s=5, reaper_interval_s=0.2) as server:
        assert server.proc is not None
        wait_for(lambda: len(server_children(server.proc.pid)) == 2, 60, what="two server processes")
        wait_for(lambda: len(leaders(dbname)) == 1, 30, what="one leader")
        # what is wrong with the database's setup (here: autovacuum off) is said once, not per process
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone() == ("on",)
        said = "".join(p.read_text(errors="replace") for p in (tmp_path / "home").glob("server-*.log"))
        assert said.count("database_warning") == (0 if autovacuum else 1), said[-2000:]
        h = {"Authorization": f"Bearer {eng}"}
        http = httpx.Client(base_url=server.base, headers=h, timeout=30)
        run = http.post("/ops/runs", json={"spec_slug": "mp", "git_sha": "g", "phases": [
            {"name": f"p{i}", "type": "noop"} for i in range(3)]}).json()

        ends: list[list[str]] = []

        def follow() -> None:  # each stream on its own connection: the kernel spreads them over the processes
            seen: list[str] = []
            with httpx.stream("GET", f"{server.base}/ops/runs/{run['run_id']}/events/stream", headers=h,
                              timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        seen.append(line.removeprefix("event: "))
                        if seen[-1] == "end":
                            break
            ends.append(seen)

        streams = [threading.Thread(target=follow, daemon=True) for _ in range(6)]
        for t in streams:
            t.start()
        time.sleep(1)
        worker = spawn_worker(server, executor, "mp", tmp_path)
        try:
            for t in streams:
                t.join(90)
        finally:
            stop([worker])
        assert len(ends) == 6
        for seen in ends:
            assert seen[-2:] == ["RUN_SUCCEEDED", "end"], seen
            assert seen.count("PHASE_SUCCEEDED") == 3

        # the leader's process dies: another takes the lease, the supervisor replaces the process
        [old] = leaders(dbname)
        for child in server_children(server.proc.pid):
            if _holds(child, old):  # the process whose connection holds the lease
                os.kill(child, signal.SIGKILL)
                break
        else:
            pytest.fail("no server process holds the leader connection")
        wait_for(lambda: (ls := leaders(dbname)) and ls != [old] and len(ls) == 1, 30, what="a new leader")
        assert http.get("/health").status_code == 200


def _holds(child: int, backend_pid: int) -> bool:
    """Whether a process has the TCP connection of that PostgreSQL backend (by its client port)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone()
    if not row:
        return False
    port = f"{row[0]:04X}"
    inodes = {Path(f"/proc/{child}/fd/{fd.name}").readlink().as_posix().removeprefix("socket:[").rstrip("]")
              for fd in Path(f"/proc/{child}/fd").iterdir()
              if Path(f"/proc/{child}/fd/{fd.name}").readlink().as_posix().startswith("socket:")}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1].endswith(f":{port}") and parts[9] in inodes:
                return True
    return False
