"""The worker process: the phase runner (worker/runner.py) with what a process adds — an executor
id, signals, and a goodbye. SIGTERM (or SIGINT) finishes the current phase, then exits; a second
one releases the phase (gives it back, the attempt not counted) and exits. On a clean exit (signal,
``--once`` with nothing left to do, ``--max-idle``) the worker tells the server it stopped
(``POST /ops/executors/{id}/stopped``), so the Control Room shows it as stopped, not stale."""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any

from lakehouse.worker.contract import ContractError, ExecutorApi
from lakehouse.worker.handler import Handler
from lakehouse.worker.runner import Interrupted, PhaseRunner

log = logging.getLogger("lakehouse.worker")

__all__ = ["Worker", "default_executor_id"]


def default_executor_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker(PhaseRunner):
    def __init__(self, client: ExecutorApi, *, executor_id: str | None = None,
                 capabilities: list[str] | None = None, handlers: dict[str, Handler] | None = None,
                 wait_s: float = 30.0, max_phases: int = 1, once: bool = False,
                 max_idle_s: float | None = None, settings: Any = None, lake: Any = None) -> None:
        super().__init__(client, executor_id=executor_id or default_executor_id(), capabilities=capabilities,
                         handlers=handlers, wait_s=wait_s, max_phases=max_phases, once=once,
                         max_idle_s=max_idle_s, settings=settings, lake=lake)
        self.stop_reason = ("no work left" if once else
                            f"idle for {max_idle_s:g} s" if max_idle_s is not None else "stopped")

    def install_signals(self) -> None:
        def on_term(signum: int, _frame: Any) -> None:
            if self.stopping.is_set() and self.current is not None:
                self.current.cancel_reason = "worker shut down"
                self.current.cancelled.set()
            self.stopping.set()
            self.stop_reason = f"stopped by {signal.Signals(signum).name}"
            log.info("stopping", extra={"signal": signum})
            if self.current is None and self._idle:
                raise Interrupted()  # break out of a long-poll claim at once

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def run(self) -> int:
        """Run until stopped; a clean end (not a crash) is reported to the server."""
        done = super().run()
        self._idle = False  # a second signal now only sets ``stopping``
        self.say_goodbye()
        return done

    def say_goodbye(self) -> None:
        """Tell the server this executor stopped cleanly; a server that cannot be told is not waited for."""
        try:
            self.client.mark_stopped(self.executor_id, self.stop_reason)
        except (ContractError, OSError) as exc:
            log.warning("could not report the stop", extra={"executor_id": self.executor_id, "error": str(exc)})
