"""Work that must run once per cluster — the lease reaper, the audit sealer and the scheduler —
behind a leader lease, so that several server processes (``lakehouse serve --processes N``) or
several hosts share one PostgreSQL database without doing it N times.

The lease is a PostgreSQL session advisory lock held by one dedicated connection (as pgqueuer and
procrastinate keep their own listener connections): the process holding it runs the duties; the
others try again every ``RETRY_S``. When the holder dies its connection closes and the lock is free
at once; when its connection is lost (a restart, ``pg_terminate_backend``) it stops its duties within
``CHECK_S`` and competes again. A short overlap is harmless: reaping and sealing lock the rows they
change, and the scheduler's ticks are unique per (job, tick). On SQLite there is one server process,
which always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from lakehouse.services.context import Context
from lakehouse.store.db import AdvisoryLease

log = logging.getLogger("lakehouse.server")

LOCK_KEY = 0x4C414B45484F5553  # "LAKEHOUS": the one advisory lock of the leader lease
CHECK_S = 1.0  # how often the leader checks that its lease connection is alive
RETRY_S = 2.0  # how often a follower tries to take the lease


class Duties:
    """Runs ``reaper_loop(ctx)`` and the scheduler thread while this process holds the lease."""

    def __init__(self, ctx: Context, reaper_loop: Callable[[Context], Coroutine[Any, Any, None]]) -> None:
        self.ctx = ctx
        self.reaper_loop = reaper_loop
        self.lease = None if ctx.db.is_sqlite else AdvisoryLease(ctx.db.url, LOCK_KEY)
        self.leading = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._scheduler: Any = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._resign()
        if self.lease is not None:
            await asyncio.to_thread(self.lease.release)

    async def _run(self) -> None:
        lease = self.lease
        if lease is None:
            await self._lead()
            await asyncio.Event().wait()  # until cancelled
            return
        while True:
            if await asyncio.to_thread(lease.try_acquire):
                log.info("leader lease taken: this process runs the reaper and the scheduler")
                await self._lead()
                while await asyncio.to_thread(lease.alive):
                    await asyncio.sleep(CHECK_S)
                log.warning("leader lease lost; stopping the reaper and the scheduler")
                await self._resign()
            await asyncio.sleep(RETRY_S)

    async def _lead(self) -> None:
        from lakehouse.services.scheduler import SchedulerThread

        self._reaper = asyncio.create_task(self.reaper_loop(self.ctx))
        self._scheduler = SchedulerThread(self.ctx)  # jobs: cron ticks, triggers, backfill slots
        self._scheduler.start()
        self.leading.set()

    async def _resign(self) -> None:
        self.leading.clear()
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        sched, self._scheduler = self._scheduler, None
        if sched is not None:
            await asyncio.to_thread(sched.stop)
