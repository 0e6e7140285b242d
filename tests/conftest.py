"""Shared fixtures: a real SQLite file and a real PostgreSQL database, migrated once per session.

The store/queue contract tests run against both through the ``db_url`` fixture. PostgreSQL must be
reachable (CI fails rather than skips when it is not).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from lakehouse.services import auth
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from lakehouse.store.migrations import upgrade
from lakehouse.store.tables import metadata

PG_ADMIN = os.environ.get("LAKEHOUSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# which databases the backend-parametrised tests run on: both by default (CI); `make unit` uses sqlite
BACKENDS = tuple(b.strip() for b in os.environ.get("LAKEHOUSE_TEST_BACKENDS", "sqlite,postgres").split(",")
                 if b.strip())

# The tests build their settings themselves: no LAKEHOUSE_* variable of the developer's shell and no
# lakehouse.toml in the working folder may leak into them.
for _name in [n for n in os.environ if n.startswith("LAKEHOUSE_") and not n.startswith("LAKEHOUSE_TEST_")]:
    del os.environ[_name]
Settings.model_config["toml_file"] = None
# Nor a stored `lakehouse login` of the developer (~/.config/lakehouse/credentials.json): the CLI
# would send `lakehouse sql` to that server. Tests that log in set their own XDG_CONFIG_HOME.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="lakehouse-test-xdg-")


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    name = f"lakehouse_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is required for the tests: {exc}")
    url = _pg_url(name)
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "control.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        names = [f'"{t.name}"' for t in metadata.sorted_tables]
        # pyiceberg's SQL catalog keeps its tables in the same database: clear them too
        names += [f'"{n}"' for (n,) in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'iceberg%'"))]
        conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL (``LAKEHOUSE_TEST_BACKENDS``
    narrows it, e.g. to ``sqlite`` for `make unit` on a machine without PostgreSQL)."""
    if request.param not in BACKENDS:
        pytest.skip(f"backend {request.param} not in LAKEHOUSE_TEST_BACKENDS")
    if request.param == "sqlite":
        dest = tmp_path / "control.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), dest)
        return f"sqlite:///{dest}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db_url, lease_ttl_s=30, retry_base_s=0.01,
                    retry_max_s=0.05)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.db.dispose()


@pytest.fixture
def admin_token(ctx: Context) -> str:
    auth.create_user(ctx, "alice", "admin", "correct horse battery")
    return auth.create_token(ctx, "alice")


@pytest.fixture
def executor_token(ctx: Context) -> str:
    auth.create_user(ctx, "robot", "executor", None)
    return auth.create_token(ctx, "robot")
