"""Engine creation and transaction scopes for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


class Database:
    """One metadata database. ``write()`` opens a transaction that owns the write lock on SQLite
    (``BEGIN IMMEDIATE``), ``read()`` a plain one. Services own these boundaries."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=pool_size, max_overflow=20,
            )
            _setup_sqlite(self.engine)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=20, pool_pre_ping=False,
                poolclass=None if pool_size else NullPool,
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._write_lock is not None:
            # One writer per process on SQLite (as datasette does): threads queue here instead of
            # spinning on SQLITE_BUSY; BEGIN IMMEDIATE still serialises against other processes.
            with self._write_lock, self.engine.connect() as conn:
                conn = conn.execution_options(lakehouse_write=True)
                with conn.begin():
                    yield conn
        else:
            from lakehouse.store.dialect import flush_notify

            with self.engine.connect() as conn:
                conn.info.pop("lakehouse_notify", None)
                with conn.begin():
                    yield conn
                    flush_notify(conn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("lakehouse_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
