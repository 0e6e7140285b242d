"""The worker loop: claim (long-poll) → run handler (heartbeat in the background) → complete with the
next claim in the same call, or fail. SIGTERM finishes the current phase, then exits; a second
SIGTERM releases the phase (fails it as retryable) and exits."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
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
        self.beater = _Beater(client)
        self.beater.start()

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
        done: list[dict[str, Any]] = []  # finished phases whose completion is batched
        idle_since = time.monotonic()
        flush_by = 0.0
        while not self.stopping.is_set() or done:
            if not pending and done:
                pending = self._flush(done, claim_next=not self.stopping.is_set())
                continue
            if self.stopping.is_set():
                break
            if not pending:
                try:
                    self._idle = True
                    pending = self.client.claim(self.executor_id, self.capabilities,
                                                wait_s=min(self.wait_s, 1.0) if self.once else self.wait_s,
                                                max_phases=self.max_phases)
                    self._idle = False
                except Exception as exc:  # the server is restarting, or the network blinked
                    log.warning("claim failed", extra={"error": str(exc)})
                    self.stopping.wait(1.0)
                    continue
                if not pending:
                    if self.once or (self.max_idle_s is not None and time.monotonic() - idle_since > self.max_idle_s):
                        break
                    continue
                flush_by = time.monotonic() + min(c.get("lease_ttl_s", 30.0) for c in pending) / 3
            idle_since = time.monotonic()
            claim = pending.pop(0)
            if self.max_phases == 1:
                pending.extend(self.execute(claim, claim_next=not pending and not self.stopping.is_set()))
                continue
            finished = self._run_phase(claim)
            if finished is not None:
                done.append(finished)
            if done and (not pending or time.monotonic() > flush_by):
                pending.extend(self._flush(done, claim_next=not pending and not self.stopping.is_set()))
        return self.done

    def execute(self, claim: dict[str, Any], claim_next: bool = False) -> list[dict[str, Any]]:
        """Run one claimed phase to its end; returns the next claims if the server handed any."""
        finished = self._run_phase(claim)
        if finished is None:
            return []
        try:
            answer = _retrying(lambda: self.client.complete(
                finished["run_id"], finished["lease_token"], finished["output_manifest"], finished["events"],
                claim_next=self._claim_next() if claim_next else None))
        except LeaseLostError:
            log.warning("lease lost before complete", extra={"run_id": finished["run_id"]})
            return []
        self.done += 1
        return answer.get("next") or []

    def _claim_next(self) -> dict[str, Any]:
        return {"executor_id": self.executor_id, "capabilities": self.capabilities, "max_phases": self.max_phases}

    def _flush(self, done: list[dict[str, Any]], claim_next: bool) -> list[dict[str, Any]]:
        """Complete a batch of finished phases in one call (and lease the next batch in it)."""
        batch = list(done)
        done.clear()
        answer = _retrying(lambda: self.client.complete_many(batch, self._claim_next() if claim_next else None))
        for r in answer["results"]:
            if "error" in r:
                log.warning("completion refused", extra={"run_id": r["run_id"], "error": r["error"]["message"]})
            else:
                self.done += 1
        return answer.get("next") or []

    def _run_phase(self, claim: dict[str, Any]) -> dict[str, Any] | None:
        """Run the handler with heartbeats; report a failure itself; return the completion to send."""
        ctx = PhaseContext(
            run_id=claim["run_id"], phase=claim["phase"], phase_type=claim["phase_type"],
            attempt=claim["attempt"], params=claim.get("params") or {},
            input_manifest=claim.get("input_manifest") or {}, previous_outputs=claim.get("previous_outputs") or {},
            environment=claim.get("environment", "dev"), spec_slug=claim.get("spec_slug", ""),
            git_sha=claim.get("git_sha", ""), workspace=claim.get("workspace", "default"), client=self.client,
            lease_token=claim["lease_token"],
        )
        self.current = ctx
        self.beater.watch(ctx, claim.get("lease_ttl_s", 30.0), claim.get("timeout_s"))
        handler = self.handlers.get(claim["phase_type"])
        try:
            if handler is None:
                raise PhaseError(f"this executor has no handler for phase type {claim['phase_type']!r}")
            manifest = handler(ctx) or {}
            ctx.check()
        except PhaseCancelled as exc:
            lost = self.beater.unwatch()
            if lost:
                return None
            if self.stopping.is_set() and ctx.cancel_reason == "worker shut down":
                try:  # give the phase back untouched: another worker starts it over
                    _retrying(lambda: self.client.release(ctx.run_id, ctx.lease_token, "worker shut down"), 10)
                except (LeaseLostError, ContractError, httpx.HTTPError, OSError):
                    pass
                return None
            self._fail(ctx, str(exc), retryable=True)
            return None
        except PhaseError as exc:
            self.beater.unwatch()
            self._fail(ctx, str(exc), exc.retryable)
            return None
        except Exception as exc:
            self.beater.unwatch()
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._fail(ctx, tb, retryable=True)
            return None
        finally:
            self.current = None
            ctx.cleanup()
        if self.beater.unwatch():
            return None
        if ctx.artifacts:
            manifest.setdefault("artifacts", [
                {"name": a["name"], "sha256": a["sha256"], "size_bytes": a["size_bytes"]} for a in ctx.artifacts])
        events, _ = ctx.drain()
        return {"run_id": ctx.run_id, "lease_token": ctx.lease_token, "output_manifest": manifest, "events": events}

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


class _Beater(threading.Thread):
    """One long-lived thread per worker: extends the lease of the phase being run every ttl/3,
    carries buffered events and progress, and enforces ``timeout_s``."""

    def __init__(self, client: ExecutorClient) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.client = client
        self._cv = threading.Condition()
        self._ctx: PhaseContext | None = None
        self._interval = 10.0
        self._deadline: float | None = None
        self._lost = False

    def watch(self, ctx: PhaseContext, ttl_s: float, timeout_s: float | None) -> None:
        with self._cv:
            self._ctx = ctx
            self._interval = max(0.05, ttl_s / 3)
            self._deadline = time.monotonic() + timeout_s if timeout_s else None
            self._lost = False
            self._cv.notify()

    def unwatch(self) -> bool:
        """Stop beating for the current phase; True when its lease was lost meanwhile."""
        with self._cv:
            self._ctx = None
            self._cv.notify()
            return self._lost

    def run(self) -> None:
        while True:
            with self._cv:
                ctx = self._ctx
                self._cv.wait(self._interval if ctx is not None else None)
                if self._ctx is None or self._ctx is not ctx:
                    continue
                if self._deadline and time.monotonic() > self._deadline:
                    ctx.cancel_reason = "phase timed out"
                    ctx.cancelled.set()
            events, progress = ctx.drain()
            try:
                self.client.heartbeat(ctx.run_id, ctx.lease_token, progress, events)
            except LeaseLostError as exc:
                with self._cv:
                    if self._ctx is ctx:
                        self._lost = True
                ctx.cancel_reason = f"lease lost: {exc.message}"
                ctx.cancelled.set()
            except Exception as exc:  # transient: the next beat may get through before the lease expires
                log.warning("heartbeat failed", extra={"error": str(exc)})
                with ctx._lock:
                    ctx._events[:0] = events
