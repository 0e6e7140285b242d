"""Engine creation and transaction scopes for SQLite and PostgreSQL.

Faults of a PostgreSQL server (a restart, ``pg_terminate_backend``, a failover) are survived here:
the pool pings a connection before handing it out, a read whose connection dies under it is run
again once on a fresh one, and :func:`is_unavailable` tells the HTTP edge which errors mean "the
database is away" (a 503 with ``Retry-After``) rather than a bug. A write is never re-run here: it
fails as a whole (PostgreSQL rolled it back) and its caller may repeat the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.pool import NullPool

log = logging.getLogger("lakehouse.store")

CONNECT_TIMEOUT_S = 10  # a database host that does not answer must not hold a request forever
# Every statement of ours is parameterised, and the hot queue statements are large CTEs whose
# *planning* cost 6-9 ms against 1-3 ms of execution (pg_stat_statements with track_planning, the
# queue benchmark): under the default ``plan_cache_mode=auto`` PostgreSQL kept choosing custom plans,
# so it planned them again on every call. Generic plans are planned once per connection. No index
# of ours has a predicate that depends on a bound value (the only partial indexes filter on a
# literal event type), which is the case where a generic plan loses.
# JIT off: the generic plans' cost estimates grow with the tables, and past ``jit_above_cost`` PostgreSQL
# compiled the completion statement on *every* execution (JIT is not kept with a prepared plan): at
# 100,000 phases one completion took 6.2 s of JIT for 44 ms of work (the soak, EXPLAIN ANALYZE), and the
# soak fell from 276 to 110 phases/s. Our statements are short OLTP ones; JIT never pays for itself.
PG_SESSION_OPTIONS = "-c plan_cache_mode=force_generic_plan -c jit=off"
# psycopg prepares a statement after it ran ``prepare_threshold`` times on a connection and keeps
# ``prepared_max`` of them (LRU): the control plane has more than the default 100 distinct statements,
# and an evicted one is parsed and planned again.
PG_PREPARE_THRESHOLD = 2
PG_PREPARED_MAX = 1000
# psycopg converts a statement's placeholders once and caches the result, but only for statements up
# to 4 KiB (its guard against ORMs' ever-different multi-row INSERTs). Ours are fixed texts, and the
# queue's hot ones are 7-20 KiB: without this each completion re-split 20 KiB of SQL (~150 us of
# server CPU per call, measured). The limit is a psycopg module constant, raised here once.
PG_CACHED_STATEMENT_BYTES = 32768


class _Connection(Connection):
    """A connection that runs a statement again, once, when a *read* scope's connection was lost
    (the server closed it, an admin terminated it). Reads are repeatable under READ COMMITTED: each
    statement sees the latest committed data anyway, so a fresh connection changes nothing."""

    def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        try:
            return super().execute(statement, parameters, execution_options=execution_options)
        except DBAPIError as exc:
            if not self._may_retry(exc):
                raise
            return super().execute(statement, parameters, execution_options=execution_options)

    def exec_driver_sql(self, statement: str, parameters: Any = None, execution_options: Any = None) -> Any:
        try:
            return super().exec_driver_sql(statement, parameters, execution_options)
        except DBAPIError as exc:
            if not self._may_retry(exc):
                raise
            return super().exec_driver_sql(statement, parameters, execution_options)

    reading = False  # inside Database.read()
    retried = False

    def _may_retry(self, exc: DBAPIError) -> bool:
        if not (exc.connection_invalidated and self.reading and not self.retried):
            return False
        self.retried = True
        log.warning("database connection lost during a read; running it again on a new connection")
        self.rollback()  # the invalidated connection is replaced at the next statement
        return True


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
                url, echo=echo, pool_size=pool_size, max_overflow=20, pool_pre_ping=True,
                poolclass=None if pool_size else NullPool,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "options": PG_SESSION_OPTIONS},
            )
            self.engine._connection_cls = _Connection
            _setup_postgres(self.engine)

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
            if self.is_sqlite:
                yield conn
                return
            assert isinstance(conn, _Connection)
            conn.reading = True
            yield conn
            # End the read with COMMIT, not the pool's ROLLBACK on return: psycopg forgets every
            # prepared statement of a connection at a rollback (DEALLOCATE ALL), so reads that
            # rolled back made every statement be parsed and planned again on the next request.
            if conn.in_transaction():
                try:
                    conn.commit()
                except DBAPIError:  # the reads are done; a connection lost now only loses the cache
                    pass

    def ping(self) -> None:
        """Answer ``SELECT 1`` or raise (``/health``)."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def psycopg_dsn(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (for psycopg's own connections)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached or dropped the connection (as opposed to
    a statement it refused): the request may succeed when repeated a moment later."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is None:  # psycopg: no answer from a server at all (refused, reset, timeout)
            return not _is_sqlite_error(orig)
        # 08: connection exception, 57P01-03: admin/crash shutdown, cannot connect now; 53300: too many
        return str(sqlstate).startswith(("08", "57P", "53"))
    return False


def _is_sqlite_error(orig: Any) -> bool:
    return type(orig).__module__.startswith("sqlite3")


DatabaseError = DBAPIError  # what the HTTP edge catches; it never imports SQLAlchemy itself
StatementFailed = StatementError  # a bind value the driver could not convert (wraps it as ``.orig``)


def refusal(exc: DBAPIError) -> tuple[str, str] | None:
    """Why the database refused a statement, when the cause is the request's value rather than a
    bug: ``("nul_character" | "out_of_range" | "invalid_value", the database's message)``."""
    text = first_line(exc)
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if "NUL" in text and "0x00" in text:  # psycopg refuses a str with "\x00" before sending it
        return "nul_character", text
    if sqlstate == "22P05":  # untranslatable character: "\u0000" inside a JSON value (jsonb refuses it)
        return "nul_character", text
    if sqlstate == "22003":  # numeric value out of range (an id past bigint)
        return "out_of_range", text
    if sqlstate.startswith("22") or type(exc.orig).__name__ == "DataError":  # data exception
        return "invalid_value", text
    return None


def first_line(exc: DBAPIError) -> str:
    return (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0][:300]


class AdvisoryLease:
    """A PostgreSQL session advisory lock held on its own connection: the leader lease of
    ``api/leader.py``. Blocking calls: use it from a thread. Closing the connection (or the process
    dying, or the server terminating the backend) releases the lock."""

    def __init__(self, url: str, key: int) -> None:
        self.dsn = psycopg_dsn(url)
        self.key = key
        self._conn: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        self.release()
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5,
                                         application_name="lakehouse-leader")
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            got = bool(row[0]) if row else False
        except psycopg.Error as exc:
            log.warning("leader lease: database unreachable", extra={"error": str(exc).strip()[:200]})
            self.release()
            return False
        if not got:
            self.release()
        return got

    def alive(self) -> bool:
        """Whether the lease is still held (its connection answers)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already gone
                pass


def wait_until_reachable(url: str, timeout_s: float, interval_s: float = 1.0) -> None:
    """Block until the database at ``url`` answers ``SELECT 1`` (a server starting before its
    PostgreSQL does); re-raise the last connection error after ``timeout_s``."""
    if make_url(url).get_backend_name() == "sqlite":
        return
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": max(1, int(interval_s * 5))})
    deadline = time.monotonic() + timeout_s
    told = False
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                if told:
                    log.info("the metadata database is reachable")
                return
            except OperationalError as exc:
                if time.monotonic() + interval_s > deadline:
                    raise
                if not told:
                    log.warning("the metadata database is not reachable yet; waiting up to %.0f s", timeout_s,
                                extra={"error": str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)})
                    told = True
                time.sleep(interval_s)
    finally:
        engine.dispose()


def _setup_postgres(engine: Engine) -> None:
    _cache_long_statements()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if not hasattr(dbapi_conn, "prepared_max"):  # psycopg 3 only
            return
        dbapi_conn.prepare_threshold = PG_PREPARE_THRESHOLD
        dbapi_conn.prepared_max = PG_PREPARED_MAX


def _cache_long_statements() -> None:
    try:
        from psycopg import _queries
    except ImportError:  # pragma: no cover - another driver
        return
    if getattr(_queries, "MAX_CACHED_STATEMENT_LENGTH", PG_CACHED_STATEMENT_BYTES) < PG_CACHED_STATEMENT_BYTES:
        _queries.MAX_CACHED_STATEMENT_LENGTH = PG_CACHED_STATEMENT_BYTES


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
