"""Connection exhaustion against the real server (`lakehouse serve` in a subprocess, SQLite home):
half-open requests are closed after LAKEHOUSE_HEADER_TIMEOUT_S, connections beyond
LAKEHOUSE_MAX_CONNECTIONS are refused at once, and /health keeps answering."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

HEADER_TIMEOUT_S = 1.5
MAX_CONNECTIONS = 8
WAIT_S = 10.0  # upper bound for anything the server should do within HEADER_TIMEOUT_S
PARTIAL = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=WAIT_S) as r:
        return int(r.status)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("http-limits")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(LAKEHOUSE_HOME=str(home / "home"), LAKEHOUSE_PORT=str(port), LAKEHOUSE_HOST="127.0.0.1",
               LAKEHOUSE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S), LAKEHOUSE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
               LAKEHOUSE_LOG_LEVEL="WARNING")
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse.cli.main", "serve", "--no-scheduler"], env=env,
                            cwd=home, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _health(port) == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _connect(port: int, payload: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    if payload:
        s.sendall(payload)
    return s


def _answer_until_closed(s: socket.socket) -> bytes | None:
    """What the server sent before closing the connection; None if it kept it open for WAIT_S."""
    data = b""
    s.settimeout(WAIT_S)
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return data


def test_half_open_requests_are_kept_forever(port: int) -> None:
    socks = [_connect(port, PARTIAL) for _ in range(MAX_CONNECTIONS // 2)] + [_connect(port)]
    assert _health(port) == 200  # a normal request still answers meanwhile
    answers = [_answer_until_closed(s) for s in socks]
    assert answers == [b""] * len(socks)  # closed by the server, silently
    assert _health(port) == 200


def test_slowloris_dribbling_header_bytes_is_closed(port: int) -> None:
    s = _connect(port, b"GET /health HTTP/1.1\r\n")
    closed = False
    deadline = time.monotonic() + WAIT_S
    try:
        while not closed and time.monotonic() < deadline:
            try:
                s.sendall(b"X-a: b\r\n")  # one header line every 0.2 s: never idle, never complete
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([s], [], [], 0.2)
            if readable:
                try:
                    closed = s.recv(4096) == b""
                except ConnectionResetError:
                    closed = True
    finally:
        s.close()
    assert closed
    assert _health(port) == 200


def test_connections_beyond_the_cap_are_all_kept(port: int) -> None:
    extra = 3
    socks = [_connect(port) for _ in range(MAX_CONNECTIONS + extra)]
    answers = [_answer_until_closed(s) for s in socks]
    assert None not in answers
    refused = [a for a in answers if a]
    assert len(refused) == extra
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in refused)
    assert _health(port) == 200
