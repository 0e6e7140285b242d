"""One Alembic history for SQLite and PostgreSQL (render_as_batch for SQLite)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_PG_LOCK_KEY = 0x6C616B65  # "lake": the advisory lock every migrating process takes on PostgreSQL


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate to ``revision`` under a lock, so that two processes starting at once (`make demo` and
    a `lakehouse sql` typed meanwhile) never both create the tables: an advisory lock on PostgreSQL,
    a file lock beside the database file on SQLite. The second process waits, then finds nothing to do."""
    with migration_lock(url):
        command.upgrade(config(url), revision)


@contextlib.contextmanager
def migration_lock(url: str) -> Iterator[None]:
    from sqlalchemy import create_engine, pool, text

    if url.startswith("sqlite"):
        import fcntl

        database = url.split(":///", 1)[-1].split("?", 1)[0]
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
    finally:
        engine.dispose()


def is_at_head(url: str) -> bool:
    """Whether the database exists and is migrated to the newest revision (read-only check)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        return current(url) == ScriptDirectory.from_config(config(url)).get_current_head()
    except (OperationalError, ProgrammingError):
        return False


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
