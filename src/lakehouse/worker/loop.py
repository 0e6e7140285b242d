"""The worker loop: claim (long-poll) → run handler (heartbeat in the background) → complete with the
next claim in the same call, or fail. SIGTERM finishes the current phase, then exits; a second
SIGTERM releases the phase (fails it as retryable) and exits."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

from lakehouse.worker.client import ContractError, ExecutorClient, LeaseLostError
from lakehouse.worker.context import PhaseCancelled, PhaseContext, PhaseError
from lakehouse.worker.registry import Handler, load_handlers

log = logging.getLogger("lakehouse.worker")


def default_executor_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(self, client: ExecutorClient, *, executor_id: str | None = None,
                 capabilities: list[str] | None = None, handlers: dict[str, Handler] | None = None,
                 wait_s: float = 30.0, max_phases: int = 1, once: bool = False,
                 max_idle_s: float | None = None) -> None:
        self.client = client
        self.handlers = handlers if handlers is not None else load_handlers()
        self.capabilities = capabilities or sorted(self.handlers)
        self.executor_id = executor_id or default_executor_id()
        self.wait_s = wait_s
        self.max_phases = max_phases
        self.once = once
        self.max_idle_s = max_idle_s
        self.stopping = threading.Event()
        self.current: PhaseContext | None = None
        self.done = 0
        self._idle = False

    # signals ---------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def on_term(signum: int, _frame: Any) -> None:
            if self.stopping.is_set() and self.current is not None:
                self.current.cancel_reason = "worker shut down"
                self.current.cancelled.set()
            self.stopping.set()
            log.info("stopping", extra={"signal": signum})
            if self.current is None and self._idle:
                raise _Interrupted()  # break out of a long-poll claim at once

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    # loop ------------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            return self._run()
        except _Interrupted:
            return self.done

    def _run(self) -> int:
        pending: list[dict[str, Any]] = []
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            if not pending:
                try:
                    self._idle = True
                    pending = self.client.claim(self.executor_id, self.capabilities,
                                                wait_s=min(self.wait_s, 1.0) if self.once else self.wait_s,
                                                max_phases=self.max_phases)
                    self._idle = False
                except (ContractError, OSError) as exc:
                    log.warning("claim failed", extra={"error": str(exc)})
                    self.stopping.wait(1.0)
                    continue
                except Exception as exc:  # httpx transport errors
                    log.warning("claim failed", extra={"error": str(exc)})
                    self.stopping.wait(1.0)
                    continue
                if not pending:
                    if self.once or (self.max_idle_s is not None and time.monotonic() - idle_since > self.max_idle_s):
                        break
                    continue
            idle_since = time.monotonic()
            claim = pending.pop(0)
            nxt = self.execute(claim, claim_next=not pending and not self.stopping.is_set())
            pending.extend(nxt)
        return self.done

    def execute(self, claim: dict[str, Any], claim_next: bool = False) -> list[dict[str, Any]]:
        """Run one claimed phase to its end; returns the next claims if the server handed any."""
        workdir = Path(tempfile.mkdtemp(prefix=f"lh-{claim['phase']}-"))
        ctx = PhaseContext(
            run_id=claim["run_id"], phase=claim["phase"], phase_type=claim["phase_type"],
            attempt=claim["attempt"], params=claim.get("params") or {},
            input_manifest=claim.get("input_manifest") or {}, previous_outputs=claim.get("previous_outputs") or {},
            environment=claim.get("environment", "dev"), spec_slug=claim.get("spec_slug", ""),
            git_sha=claim.get("git_sha", ""), workdir=workdir, client=self.client,
            lease_token=claim["lease_token"],
        )
        self.current = ctx
        beat = _Heartbeat(self.client, ctx, claim.get("lease_ttl_s", 30.0), claim.get("timeout_s"))
        handler = self.handlers.get(claim["phase_type"])
        try:
            beat.start()
            if handler is None:
                raise PhaseError(f"this executor has no handler for phase type {claim['phase_type']!r}")
            manifest = handler(ctx) or {}
            ctx.check()
        except PhaseCancelled as exc:
            beat.stop()
            if not beat.lost:
                self._fail(ctx, str(exc), retryable=True)
            return []
        except PhaseError as exc:
            beat.stop()
            self._fail(ctx, str(exc), exc.retryable)
            return []
        except Exception as exc:
            beat.stop()
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._fail(ctx, tb, retryable=True)
            return []
        finally:
            self.current = None
            shutil.rmtree(workdir, ignore_errors=True)
        beat.stop()
        if beat.lost:
            return []
        if ctx.artifacts:
            manifest.setdefault("artifacts", [
                {"name": a["name"], "sha256": a["sha256"], "size_bytes": a["size_bytes"]} for a in ctx.artifacts])
        events, _ = ctx.drain()
        try:
            answer = _retrying(lambda: self.client.complete(
                ctx.run_id, ctx.lease_token, manifest, events,
                claim_next={"executor_id": self.executor_id, "capabilities": self.capabilities,
                            "max_phases": self.max_phases} if claim_next else None))
        except LeaseLostError:
            log.warning("lease lost before complete", extra={"run_id": ctx.run_id, "phase": ctx.phase})
            return []
        self.done += 1
        return answer.get("next") or []

    def _fail(self, ctx: PhaseContext, error: str, retryable: bool) -> None:
        events, _ = ctx.drain()
        try:
            _retrying(lambda: self.client.fail(ctx.run_id, ctx.lease_token, error, retryable, events))
        except LeaseLostError:
            pass


def _retrying(call: Any, budget_s: float = 120.0) -> Any:
    """Retry a lease-holder call through server restarts and network blips (not through 4xx)."""
    delay = 0.1
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return call()
        except ContractError as exc:
            if exc.status < 500 or time.monotonic() > deadline:
                raise
        except (httpx.TransportError, OSError):
            if time.monotonic() > deadline:
                raise
        log.warning("server unreachable; retrying", extra={"delay_s": delay})
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


class _Interrupted(BaseException):
    pass


class _Heartbeat(threading.Thread):
    """Extends the lease every ttl/3, carries buffered events and progress, enforces timeout_s."""

    def __init__(self, client: ExecutorClient, ctx: PhaseContext, ttl_s: float, timeout_s: float | None) -> None:
        super().__init__(name=f"heartbeat-{ctx.phase}", daemon=True)
        self.client = client
        self.ctx = ctx
        self.interval = max(0.05, ttl_s / 3)
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self._halt = threading.Event()
        self.lost = False

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            if self.deadline and time.monotonic() > self.deadline:
                self.ctx.cancel_reason = "phase timed out"
                self.ctx.cancelled.set()
            events, progress = self.ctx.drain()
            try:
                self.client.heartbeat(self.ctx.run_id, self.ctx.lease_token, progress, events)
            except LeaseLostError as exc:
                self.lost = True
                self.ctx.cancel_reason = f"lease lost: {exc.message}"
                self.ctx.cancelled.set()
                return
            except Exception as exc:  # transient: the next beat may get through before the lease expires
                log.warning("heartbeat failed", extra={"error": str(exc)})
                with self.ctx._lock:
                    self.ctx._events[:0] = events
