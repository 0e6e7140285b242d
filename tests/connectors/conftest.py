"""Fixtures for the connector tests: Odoo-shaped databases on SQLite and on the real PostgreSQL.

Each PostgreSQL database is created under a unique name on the test server and dropped at the end of
the session. ``seeded_url`` is shared by read-only tests; tests that change data use ``fresh_url``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lakehouse.connectors import mutate, open_source, seed

PG_ADMIN = os.environ.get("LAKEHOUSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SEEDED_SCALE = 2
NOW = datetime(2026, 1, 2, 9, 30, 0, 123456)
WATCHED = ("account_move", "account_move_line", "res_partner", "sale_order", "sale_order_line")


@pytest.fixture(scope="session")
def pg_factory() -> Iterator[Callable[[], str]]:
    """Make empty PostgreSQL databases with unique names; all are dropped after the session."""
    created: list[str] = []

    def make() -> str:
        name = f"lh_connectors_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
            pytest.fail(f"PostgreSQL is required for the tests: {exc}")
        created.append(name)
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"

    yield make
    if created:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_url(backend: str, directory: Path, pg_factory: Callable[[], str]) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / f'odoo-{uuid.uuid4().hex[:8]}.db'}"
    return pg_factory()


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path, pg_factory: Callable[[], str]) -> str:
    """An empty database (SQLite file path or new PostgreSQL database), once per backend."""
    return new_url(request.param, tmp_path, pg_factory)


@pytest.fixture(scope="session", params=BACKENDS)
def seeded_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               pg_factory: Callable[[], str]) -> str:
    """A database seeded at scale 2 with the default seed, shared by read-only tests."""
    url = new_url(request.param, tmp_path_factory.mktemp("odoo"), pg_factory)
    seed(url, SEEDED_SCALE)
    return url


@pytest.fixture(scope="session")
def seeded_pair(tmp_path_factory: pytest.TempPathFactory, pg_factory: Callable[[], str]) -> tuple[str, str]:
    """The same seed on SQLite and on PostgreSQL (scale 1)."""
    lite = new_url("sqlite", tmp_path_factory.mktemp("pair"), pg_factory)
    pg = pg_factory()
    seed(lite, 1)
    seed(pg, 1)
    return lite, pg


def pair_url(pair: tuple[str, str], backend: str) -> str:
    return pair[1] if backend == "postgres" else pair[0]


@dataclass(frozen=True)
class Mutated:
    """A scale-1 database before and after one ``mutate(url, 5, NOW)``."""

    url: str
    watermarks: dict[str, datetime]  # max(write_date) per table before the change
    ids: dict[str, list[int]]  # every id per table before the change
    changes: dict[str, dict[str, list[int]]]


@pytest.fixture(scope="session", params=BACKENDS)
def mutated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            pg_factory: Callable[[], str]) -> Mutated:
    url = new_url(request.param, tmp_path_factory.mktemp("mutated"), pg_factory)
    seed(url, 1)
    with open_source(url) as src:
        watermarks = {t: src.max_value(t, "write_date") for t in WATCHED}
        ids = {t: src.ids(t).to_pylist() for t in WATCHED}
    changes: Any = mutate(url, 5, NOW)
    return Mutated(url, watermarks, ids, changes)
