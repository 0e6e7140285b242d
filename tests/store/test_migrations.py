"""One Alembic history for both databases; `upgrade head` must equal the table models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from lakehouse.store.migrations import current
from lakehouse.store.tables import metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # pyiceberg's SQL catalog keeps its own tables in the same database
    return not (type_ == "table" and name and name.startswith("iceberg_"))


def test_upgrade_head_equals_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _include})
            diff = compare_metadata(mc, metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_database_is_at_head(db_url: str) -> None:
    from alembic.script import ScriptDirectory

    from lakehouse.store.migrations import config

    head = ScriptDirectory.from_config(config(db_url)).get_current_head()
    assert current(db_url) == head
