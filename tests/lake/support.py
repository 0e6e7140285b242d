"""Helpers shared by the lake and data API tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from lakehouse.lake.catalog import catalog_for
from lakehouse.services.context import Context


def purge_catalog(catalog: Any) -> None:
    """Forget every table of the ``lakehouse`` catalog: the PostgreSQL test database lives for the whole
    session while each test has its own warehouse folder (the conftest truncates only our tables)."""
    from pyiceberg.catalog.sql import IcebergNamespaceProperties, IcebergTables

    with catalog.engine.begin() as conn:
        conn.execute(delete(IcebergTables).where(IcebergTables.catalog_name == catalog.name))
        conn.execute(delete(IcebergNamespaceProperties).where(IcebergNamespaceProperties.catalog_name == catalog.name))


def fresh_catalog(ctx: Context) -> Any:
    catalog = catalog_for(ctx.settings)
    purge_catalog(catalog)
    return catalog
