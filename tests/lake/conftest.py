from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lakehouse.lake.catalog import close_catalogs
from lakehouse.services.context import Context
from tests.lake.support import fresh_catalog


@pytest.fixture
def catalog(ctx: Context) -> Iterator[Any]:
    """The pyiceberg SQL catalog in the test's metadata database (SQLite or PostgreSQL), warehouse in
    the test's LAKEHOUSE_HOME."""
    yield fresh_catalog(ctx)
    close_catalogs()
