"""The FastAPI application factory: routers, error shape, size limits, the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from lakehouse import __version__, web
from lakehouse.api import (
    alerts,
    caps,
    data,
    datasets,
    errors,
    jobs,
    leader,
    ops,
    ops_connections,
    ops_metrics,
    ops_query,
    pipelines,
    tokens,
    users,
    workspaces,
)
from lakehouse.api.iceberg_rest import create as iceberg_catalog
from lakehouse.api.limits import BodyLimit
from lakehouse.api.schemas import Health
from lakehouse.services import alert_eval, artifacts, audit, openlineage, protocol, upload_sweeper
from lakehouse.services.context import Context
from lakehouse.services.waker import PgListener, SqliteWatcher
from lakehouse.store.db import psycopg_dsn

log = logging.getLogger("lakehouse.server")
# set by `serve --processes N` in its children: the parent checked the database's setup and logged
# what is wrong once (cli/processes.py, check_database_once), so each child does not say it again
DB_CHECKED_ENV = "LAKEHOUSE_SERVE_DB_CHECKED"


def create_app(ctx: Context, *, reaper: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        listener: PgListener | SqliteWatcher | None = None
        if not ctx.db.is_sqlite:
            listener = PgListener(psycopg_dsn(ctx.db.url), ctx.waker)
            listener.start()
            if os.environ.get(DB_CHECKED_ENV) != "1":  # `serve --processes N`: the parent said it once
                for warning in await run_in_threadpool(protocol.database_warnings, ctx):
                    log.warning(warning, extra={"event": "database_warning"})
        elif ctx.db.engine.url.database not in (None, "", ":memory:"):
            listener = SqliteWatcher(str(ctx.db.engine.url.database), ctx.waker, lambda: protocol.ready_state(ctx))
            listener.start()
        # the reaper, audit sealer and scheduler run in one process of the cluster (the leader lease)
        duties = leader.Duties(ctx, _reaper_loop) if reaper else None
        if duties:
            app.state.runs_scheduler = duties.leading.is_set  # /ready expects a scheduler while this process leads
            duties.start()
        try:
            yield
        finally:
            if duties:
                await duties.stop()
            if listener:
                listener.stop()
                await asyncio.to_thread(listener.join, 3.0)

    app = FastAPI(title="Lakehouse Control Room", version=__version__, lifespan=lifespan,
                  description="Control plane API and the executor contract (docs/executor-contract.md).",
                  responses=errors.UNAVAILABLE)  # any route: 503 database_unavailable with Retry-After
    app.state.ctx = ctx
    artifacts.store_for(ctx)  # a malformed LAKEHOUSE_ARTIFACT_STORE stops the start, not the first upload
    openlineage.install(ctx.settings)  # a no-op unless LAKEHOUSE_OPENLINEAGE_* is set
    app.state.runs_scheduler = False  # /ready: a process without the scheduler (yet) is still ready
    errors.install(app)
    app.include_router(ops.router)
    app.include_router(ops_query.router)
    app.include_router(ops_connections.router)
    web.install(app)
    app.include_router(data.router)
    app.include_router(datasets.router)
    app.include_router(pipelines.router)
    app.include_router(jobs.router)
    app.include_router(workspaces.router)
    app.include_router(users.router)
    app.include_router(tokens.router)
    app.include_router(alerts.router)
    app.include_router(caps.router)
    app.include_router(ops_metrics.router)
    app.mount("/iceberg", iceberg_catalog(ctx))  # the Iceberg REST catalog (docs/iceberg-rest.md)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> dict[str, Any]:
        ctx.db.ping()
        return {"status": "ok", "version": __version__, "database": ctx.db.dialect}

    app.add_middleware(BodyLimit, max_json=ctx.settings.max_body_bytes,
                       max_upload=ctx.settings.max_artifact_bytes)
    return app


async def _reaper_loop(ctx: Context) -> None:
    """Requeue expired leases, seal new audit entries into the chain, sweep abandoned uploads, wake
    claim waiters when a delayed retry becomes due."""
    interval = ctx.settings.reaper_interval_s
    while True:
        try:
            await run_in_threadpool(protocol.reap, ctx)
            await run_in_threadpool(audit.seal_pending, ctx)
            await run_in_threadpool(alert_eval.run_pass, ctx)  # time-based alert rules, notifications (own interval)
            await run_in_threadpool(upload_sweeper.run_pass, ctx)  # abandoned uploads (own interval)
            due = await run_in_threadpool(protocol.next_due, ctx)
            now = ctx.clock()
            if due is not None and due <= now + timedelta(seconds=interval):
                delay = max(0.0, (due - now).total_seconds())
                await asyncio.sleep(delay)
                ctx.waker.ready()
                await asyncio.sleep(max(0.0, interval - delay))
            else:
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reaper failed; retrying")
            await asyncio.sleep(interval)
