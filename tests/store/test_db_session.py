"""The server's PostgreSQL sessions: generic plans (planned once per connection) and no JIT (which
PostgreSQL would otherwise run on every execution of the queue's statements once the tables are large
enough for their estimated cost to pass ``jit_above_cost``)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lakehouse.services.context import Context


def test_sessions_use_generic_plans_and_no_jit(ctx: Context) -> None:
    if ctx.db.is_sqlite:
        pytest.skip("PostgreSQL session settings")
    with ctx.db.read() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_generic_plan"
        assert conn.execute(text("SHOW jit")).scalar() == "off"


def test_long_statements_are_converted_once(ctx: Context) -> None:
    """psycopg caches a statement's placeholder conversion only up to a length; the queue's statements
    are 7-20 KiB, so the server raises that limit (store/db.py) rather than re-split them per call."""
    if ctx.db.is_sqlite:
        pytest.skip("psycopg (PostgreSQL) only")
    from psycopg import _queries

    statement = text("SELECT CAST(:a AS int) + 1 AS v /* " + "x" * 12000 + " */")
    with ctx.db.read() as conn:
        assert conn.execute(statement, {"a": 1}).scalar() == 2
        hits = _queries._query2pg.cache_info().hits
        assert conn.execute(statement, {"a": 2}).scalar() == 3
        assert _queries._query2pg.cache_info().hits == hits + 1
