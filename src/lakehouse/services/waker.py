"""Wakes long-polling claims and event streams when work or events appear.

In-process: any service that makes a phase runnable calls :meth:`Waker.ready`, and a retry in
backoff schedules :meth:`Waker.wake_in` for when it becomes runnable. Across processes on
PostgreSQL, :class:`PgListener` turns ``NOTIFY`` into the same calls; on SQLite,
:class:`SqliteWatcher` polls ``PRAGMA data_version`` (a counter SQLite bumps when another connection
commits, read from shared memory: no query, no lock) and, when it moved, wakes waiters if work is
runnable and schedules a wake for the next delayed phase.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger(__name__)


class Waker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._runs: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
        self._closed = False
        self._timer: threading.Timer | None = None
        self._timer_due = 0.0
        self._generation = 0  # bumped by every ready(): a waiter that saw an older one returns at once

    @property
    def generation(self) -> int:
        """Read before looking for work; pass to :meth:`wait_ready` so that a wake-up between the
        look and the wait is not lost."""
        return self._generation

    # producers (any thread)
    def ready(self) -> None:
        with self._lock:
            self._generation += 1
            waiters = list(self._ready)
        for loop, ev in waiters:
            _set(loop, ev)

    def wake_in(self, delay_s: float) -> None:
        """Call :meth:`ready` in ``delay_s`` (a retry's backoff ends). One timer: the earliest wins;
        a later wake is rescheduled by whoever sees the next due phase (claims, the reaper, watchers)."""
        due = time.monotonic() + max(0.0, delay_s)
        with self._lock:
            if self._closed or (self._timer is not None and self._timer.is_alive() and self._timer_due <= due):
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(max(0.0, delay_s) + 0.001, self._fire)
            self._timer.daemon = True
            self._timer_due = due
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
        self.ready()

    def close(self) -> None:
        """Shutting down: wake every waiter now and let later waits return at once."""
        self._closed = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
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
    async def wait_ready(self, timeout: float, since: int | None = None) -> bool:
        """Wait for work; with ``since`` (a :attr:`generation` read before the caller looked for
        work) return at once when a wake-up came in between."""
        return await self._wait(self._ready, timeout, since)

    async def wait_run(self, run_id: str, timeout: float) -> bool:
        with self._lock:
            bucket = self._runs[run_id]
        try:
            return await self._wait(bucket, timeout)
        finally:
            with self._lock:
                if not self._runs.get(run_id):
                    self._runs.pop(run_id, None)

    async def _wait(self, bucket: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]], timeout: float,
                    since: int | None = None) -> bool:
        if self._closed:
            return False
        ev = asyncio.Event()
        item = (asyncio.get_running_loop(), ev)
        with self._lock:
            if since is not None and since != self._generation:
                return True
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


class SqliteWatcher(threading.Thread):
    """Cross-process wake-ups on SQLite: work created by another process (the CLI's
    ``pipelines run``, a second server) wakes this process's long-polls within ``interval_s``.

    Polls ``PRAGMA data_version`` on its own connection (it changes when any other connection
    commits); when it moved, ``check()`` answers (runnable now, seconds to the next delayed phase)
    and the watcher calls :meth:`Waker.ready` / :meth:`Waker.wake_in`.
    """

    def __init__(self, path: str, waker: Waker, check: Callable[[], tuple[bool, float | None]],
                 interval_s: float = 0.05) -> None:
        super().__init__(name="sqlite-watcher", daemon=True)
        self.path = path
        self.waker = waker
        self.check = check
        self.interval_s = interval_s
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        seen: int | None = None
        conn: sqlite3.Connection | None = None
        while not self._halt.wait(self.interval_s):
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version == seen:
                    continue
                seen = version
                runnable, due_in = self.check()
                if runnable:
                    self.waker.ready()
                if due_in is not None:
                    self.waker.wake_in(due_in)
            except Exception as exc:  # a locked or replaced file: reopen and try again
                log.warning("sqlite watcher retrying", extra={"error": str(exc)})
                if conn is not None:
                    conn.close()
                conn = None
                self._halt.wait(1.0)
        if conn is not None:
            conn.close()
