"""Jobs tests: a fake clock the services read, and a small SQL job definition."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.services.context import Context
from tests.clock_support import Clock


@pytest.fixture
def clock(ctx: Context) -> Iterator[Clock]:
    c = Clock(datetime(2024, 1, 1, 12, 0, tzinfo=UTC))
    ctx.clock = c
    yield c


@pytest.fixture
def admin() -> Principal:
    return SYSTEM


def sql_job(name: str = "daily", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "sql", "params": {"day": {"type": "date", "default": "2024-01-01"},
                                                     "limit": {"type": "int", "default": 10}},
            "sql": {"query": "SELECT {{ day }} AS day, {{ limit }} AS n"}, **extra}


def scheduled(name: str, cron: str, tz: str = "UTC", **sched: Any) -> dict[str, Any]:
    return {"name": name, "type": "sql", "sql": {"query": "SELECT {{ logical_date }} AS at"},
            "schedule": {"cron": cron, "timezone": tz, **sched}}
