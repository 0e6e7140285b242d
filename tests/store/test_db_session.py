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
