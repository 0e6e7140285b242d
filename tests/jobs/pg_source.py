"""A PostgreSQL *source* database for sql jobs with ``connection:`` (never the metadata database, which
a job may not read): created once per session on the test server, dropped at the end.

It holds ``people(who, greeting)`` with two rows, ``hits(n)`` (empty) and ``bump()``, a function that
writes to ``hits`` — a write that no lexical check can see, so only the read-only transaction stops it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

ADMIN_DSN = os.environ.get("LAKEHOUSE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
SETUP = """
CREATE TABLE people (who text PRIMARY KEY, greeting text NOT NULL);
INSERT INTO people VALUES ('world', 'hello'), ('lakehouse', 'hi');
CREATE TABLE hits (n int);
CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS 'INSERT INTO hits VALUES (1) RETURNING n';
"""


def _dsn(db: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="session")
def pg_source() -> Iterator[dict[str, Any]]:
    """Connection settings of the source database (``config`` of a postgres connection) and ``dsn``."""
    import psycopg

    db = f"lh_source_{os.getpid()}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}"')
    with psycopg.connect(_dsn(db), autocommit=True) as c:
        c.execute(SETUP)
    try:
        yield {"config": {"host": "127.0.0.1", "port": "5432", "database": db, "user": "postgres"},
               "dsn": _dsn(db)}
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def scalar(dsn: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(sql).fetchone()
    return row[0] if row else None
