"""Where SQL runs: a bounded pool of its own, and caps on how many queries run at once.

A query can run for minutes; the threads that answer ``/health`` and the executor contract must never
wait behind one. So the HTTP edges (``POST /api/sql``, the SQL page) hand the query to this pool —
``LAKEHOUSE_SQL_WORKERS`` threads — and await it (:meth:`SqlRuntime.run`); at most
``LAKEHOUSE_SQL_QUEUE`` more may wait for a thread, beyond which the answer is 429 ``sql_busy``.

Every query (pool, CLI, ``query`` phases) is admitted by :meth:`SqlGate.admit` once its workspace is
known: at most ``LAKEHOUSE_SQL_MAX_PER_USER`` running queries per user and
``LAKEHOUSE_SQL_MAX_PER_WORKSPACE`` per workspace, else :class:`RateLimited` naming the cap, with
``details.retry_after_s`` (the edges send it as ``Retry-After``). The counts live in this process:
the control plane serves HTTP from one process (``lakehouse serve``/``up``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from lakehouse.services.context import Context
from lakehouse.services.errors import RateLimited
from lakehouse.settings import Settings

T = TypeVar("T")
MAX_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class _Slot:
    user: str
    workspace_id: int
    deadline: float  # time.monotonic() by which the query is stopped at the latest


def _retry_after(slots: list[_Slot], now: float) -> int:
    """Seconds until a slot frees at the latest (the earliest deadline), between 1 and 30."""
    soonest = min((s.deadline for s in slots), default=now + 1)
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(soonest - now)))


class SqlGate:
    """Counts the queries running in this process, by user and by workspace."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._running: dict[int, _Slot] = {}
        self._ids = itertools.count()

    @contextmanager
    def admit(self, user: str, workspace_id: int, timeout_s: float) -> Iterator[None]:
        """Hold one slot while the block runs; ``RateLimited`` when a cap is reached."""
        now = time.monotonic()
        with self._lock:
            mine = [s for s in self._running.values() if s.user == user]
            cap = self.settings.sql_max_per_user
            if len(mine) >= cap:
                raise _busy("sql_user_busy", f"you already run {len(mine)} queries at once, the most one user may "
                            f"(sql_max_per_user = {cap}); wait for one to finish", "sql_max_per_user", cap, mine, now)
            theirs = [s for s in self._running.values() if s.workspace_id == workspace_id]
            cap = self.settings.sql_max_per_workspace
            if len(theirs) >= cap:
                raise _busy("sql_workspace_busy", f"this workspace already runs {len(theirs)} queries at once, the "
                            f"most it may (sql_max_per_workspace = {cap}); wait for one to finish",
                            "sql_max_per_workspace", cap, theirs, now)
            key = next(self._ids)
            self._running[key] = _Slot(user, workspace_id, now + timeout_s)
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def running(self) -> int:
        with self._lock:
            return len(self._running)


def _busy(code: str, message: str, cap: str, limit: int, slots: list[_Slot], now: float) -> RateLimited:
    return RateLimited(message, code=code, details={"cap": cap, "limit": limit,
                                                    "retry_after_s": _retry_after(slots, now)})


class SqlRuntime:
    """The SQL pool and gate of one service context."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = SqlGate(settings)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0  # submitted to the pool and not finished (running or waiting)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.settings.sql_workers,
                                                thread_name_prefix="lakehouse-sql")
        return self._executor

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn`` on the SQL pool; ``RateLimited`` (``sql_busy``) when the pool and its queue are full."""
        capacity = self.settings.sql_workers + self.settings.sql_queue
        with self._lock:
            if self._in_flight >= capacity:
                raise RateLimited(f"the server already runs or queues {self._in_flight} queries, the most it takes "
                                  f"(sql_workers + sql_queue = {capacity}); try again shortly", code="sql_busy",
                                  details={"cap": "sql_queue", "limit": capacity, "retry_after_s": 1})
            self._in_flight += 1
            try:
                future = self._pool().submit(fn, *args, **kwargs)
            except BaseException:
                self._in_flight -= 1
                raise
        future.add_done_callback(self._done)  # counted until the thread is free, even if the caller left
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the SQL pool and await it without holding any other thread."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


_runtimes: dict[int, SqlRuntime] = {}
_runtimes_lock = threading.Lock()


def runtime(ctx: Context) -> SqlRuntime:
    """The SQL runtime of a service context (made on first use, shut down when the context goes)."""
    key = id(ctx)
    with _runtimes_lock:
        found = _runtimes.get(key)
        if found is None:
            found = _runtimes[key] = SqlRuntime(ctx.settings)
            weakref.finalize(ctx, _forget, key)
        return found


def _forget(key: int) -> None:
    with _runtimes_lock:
        found = _runtimes.pop(key, None)
    if found is not None:
        found.shutdown()
