"""What every service needs: the database, the settings, a clock and the claim waker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lakehouse.services.waker import Waker
from lakehouse.settings import Settings
from lakehouse.store.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    db: Database
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    waker: Waker = field(default_factory=Waker)


def open_context(settings: Settings, *, pool_size: int = 10) -> Context:
    settings.ensure_home()
    return Context(db=Database(settings.database_url, pool_size=pool_size), settings=settings)
