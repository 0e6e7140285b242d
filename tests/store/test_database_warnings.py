"""The server says at start-up when the metadata database is set up so that the queue will slow down:
PostgreSQL without autovacuum (the queue's tables churn: a dead row version per claim and completion)."""

from __future__ import annotations

import logging
import os

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from lakehouse.api.app import create_app
from lakehouse.services import protocol
from lakehouse.services.context import Context


def _autovacuum_off(ctx: Context) -> bool:
    with ctx.db.engine.connect() as conn:
        return bool(conn.execute(text("SHOW autovacuum")).scalar() != "on")


def test_the_warning_follows_the_servers_setting(ctx: Context) -> None:
    expected = [] if ctx.db.is_sqlite or not _autovacuum_off(ctx) else [protocol.NO_AUTOVACUUM]
    assert protocol.database_warnings(ctx) == expected


def test_the_server_logs_it_once_at_start(ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lakehouse.server"), TestClient(create_app(ctx, reaper=False)):
        pass
    said = [r for r in caplog.records if r.getMessage() == protocol.NO_AUTOVACUUM]
    assert len(said) == (0 if ctx.db.is_sqlite or not _autovacuum_off(ctx) else 1)
    assert "autovacuum off" in protocol.NO_AUTOVACUUM and "docs/operations-install.md" in protocol.NO_AUTOVACUUM


def test_several_processes_say_it_once(ctx: Context, caplog: pytest.LogCaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --processes N`: the parent logs the warning; its children (which inherit the parent's
    environment) do not repeat it."""
    from lakehouse.api.app import DB_CHECKED_ENV
    from lakehouse.cli.processes import check_database_once

    monkeypatch.delenv(DB_CHECKED_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="lakehouse"):
        check_database_once(ctx)  # the parent
        assert os.environ.get(DB_CHECKED_ENV) == "1"
        for _child in range(2):
            with TestClient(create_app(ctx, reaper=False)):
                pass
    said = [r for r in caplog.records if r.getMessage() == protocol.NO_AUTOVACUUM]
    assert len(said) == (0 if ctx.db.is_sqlite or not _autovacuum_off(ctx) else 1)
