"""Fault injection: a fresh PostgreSQL database per test (its backends may be terminated without
touching anyone else's) and a TCP proxy in front of PostgreSQL that can make the database vanish."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lakehouse.services import auth
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store.migrations import upgrade
from tests.conftest import PG_ADMIN, _pg_url
from tests.e2e.harness import free_port


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped afterwards."""
    name = f"lakehouse_fault_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_tokens(home: Path, url: str) -> tuple[str, str]:
    """An engineer's token (creates runs, reads) and an executor's token."""
    ctx = open_context(Settings(home=home, database_url=url))
    try:
        auth.create_user(ctx, "eng", "engineer", None)
        auth.create_user(ctx, "exec", "executor", None)
        return auth.create_token(ctx, "eng"), auth.create_token(ctx, "exec")
    finally:
        ctx.db.dispose()


def terminate_backends(dbname: str) -> tuple[int, int]:
    """``pg_terminate_backend`` every backend of ``dbname``; returns (killed, killed mid-transaction)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, xact_start IS NOT NULL AND state <> 'idle' FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchall()
        for pid, _ in rows:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(rows), sum(1 for _, in_tx in rows if in_tx)


def backends_in_transaction(dbname: str) -> int:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND xact_start IS NOT NULL "
            "AND state <> 'idle' AND pid <> pg_backend_pid()", (dbname,)).fetchone()
        assert row is not None
        return int(row[0])


class TcpProxy:
    """Forwards 127.0.0.1:port to PostgreSQL while up; ``down()`` closes every connection and
    refuses new ones (the database host is gone), ``up()`` brings it back on the same port."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._open = self._open, set()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._open -= {src, dst}
            src.close()


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy()
    yield proxy
    proxy.down()


def via(url: str, proxy: TcpProxy) -> str:
    return url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
