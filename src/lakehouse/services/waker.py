"""Wakes long-polling claims and event streams when work or events appear.

In-process: any service that makes a phase runnable calls :meth:`Waker.ready`. Across processes on
PostgreSQL, :class:`PgListener` turns ``NOTIFY`` into the same calls. No sleep-polling.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict

log = logging.getLogger(__name__)


class Waker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._runs: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
        self._closed = False

    # producers (any thread)
    def ready(self) -> None:
        with self._lock:
            waiters = list(self._ready)
        for loop, ev in waiters:
            _set(loop, ev)

    def close(self) -> None:
        """Shutting down: wake every waiter now and let later waits return at once."""
        self._closed = True
        with self._lock:
            waiters = list(self._ready) + [w for bucket in self._runs.values() for w in bucket]
        for loop, ev in waiters:
            _set(loop, ev)

    @property
    def closed(self) -> bool:
        return self._closed

    def run_event(self, run_id: str) -> None:
        with self._lock:
            waiters = list(self._runs.get(run_id, ()))
        for loop, ev in waiters:
            _set(loop, ev)

    # consumers (async)
    async def wait_ready(self, timeout: float) -> bool:
        return await self._wait(self._ready, timeout)

    async def wait_run(self, run_id: str, timeout: float) -> bool:
        with self._lock:
            bucket = self._runs[run_id]
        try:
            return await self._wait(bucket, timeout)
        finally:
            with self._lock:
                if not self._runs.get(run_id):
                    self._runs.pop(run_id, None)

    async def _wait(self, bucket: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]], timeout: float) -> bool:
        if self._closed:
            return False
        ev = asyncio.Event()
        item = (asyncio.get_running_loop(), ev)
        with self._lock:
            bucket.add(item)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                bucket.discard(item)


def _set(loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
    try:
        loop.call_soon_threadsafe(ev.set)
    except RuntimeError:  # loop closed
        pass


class PgListener(threading.Thread):
    """LISTEN on the queue channels and forward notifications to a :class:`Waker`."""

    def __init__(self, dsn: str, waker: Waker) -> None:
        super().__init__(name="pg-listener", daemon=True)
        self.dsn = dsn
        self.waker = waker
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        import psycopg

        from lakehouse.store.queue import EVENTS_CHANNEL, READY_CHANNEL

        while not self._halt.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {READY_CHANNEL}")
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    while not self._halt.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.channel == READY_CHANNEL:
                                self.waker.ready()
                            else:
                                self.waker.run_event(note.payload)
            except Exception as exc:  # reconnect after a database restart
                log.warning("pg listener reconnecting", extra={"error": str(exc)})
                self._halt.wait(1.0)
