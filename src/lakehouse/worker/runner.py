"""The phase runner: claim (long-poll) → run handler (heartbeats in the background) → complete with
the next claim in the same call, or fail. It speaks to the server only through an
:class:`~lakehouse.worker.contract.ExecutorApi` — the HTTP client (worker/client.py) in ``lakehouse
worker``, the in-memory client over the services (worker/inmemory.py) in tests — and knows nothing of
signals or processes (worker/loop.py adds those).

Every lease the runner holds is heartbeated, not only the running phase's: with ``max_phases`` > 1
the phases waiting their turn and the finished ones waiting for the batched completion are kept
alive by one batched heartbeat call. A completion the server refuses (a 4xx other than 409, e.g. a
malformed manifest) fails that phase with the server's message; it never stops the runner.

A phase with a ``timeout_s`` runs its handler in a thread of its own, watched by the runner: past
the timeout the phase is cancelled (a handler's child processes get SIGTERM, then SIGKILL after
``phase_kill_grace_s``, engines/process.py); a handler still running two seconds after that grace
is interrupted with :class:`PhaseCancelled` raised in its thread and
abandoned. Either way the phase is failed with the error kind ``timeout`` (attempt ``timed_out``)
and the runner goes on to its next claim."""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
import time
import traceback
from typing import Any

from lakehouse.worker.contract import ContractError, ExecutorApi, FailKind, LeaseLostError
from lakehouse.worker.handler import Handler, PhaseCancelled, PhaseContext, PhaseError

log = logging.getLogger("lakehouse.worker")
_CACHED_KEPT = 64  # input manifests held, by run
_CACHED_SENT = 8   # of which the newest are named in each claim
DEFAULT_KILL_GRACE_S = 10.0  # LAKEHOUSE_PHASE_KILL_GRACE_S when the runner has no settings
_STOP_WAIT_S = 2.0  # after the grace: a SIGKILLed child is gone in milliseconds
_ABANDON_WAIT_S = 1.0  # after the interrupt raised in an abandoned handler's thread


class Interrupted(BaseException):
    """Raised (by a signal handler) to break out of an idle long-poll claim at once."""


class PhaseTimedOut(PhaseCancelled):
    """The phase ran past its ``timeout_s`` and was stopped."""


class PhaseRunner:
    def __init__(self, client: ExecutorApi, *, executor_id: str, capabilities: list[str] | None = None,
                 handlers: dict[str, Handler] | None = None, wait_s: float = 30.0, max_phases: int = 1,
                 once: bool = False, max_idle_s: float | None = None, settings: Any = None,
                 run_id: str | None = None, lake: Any = None) -> None:
        if handlers is None:
            from lakehouse.worker.registry import load_handlers

            handlers = load_handlers()
        self.client = client
        self.settings = settings  # the worker's Settings, built once at its edge; handed to every phase
        self.lake = lake  # how phases reach the lake (lakehouse.lake.lease: the REST catalog under their lease)
        self.handlers = handlers
        self.capabilities = capabilities or sorted(self.handlers)
        self.executor_id = executor_id
        self.wait_s = wait_s
        self.max_phases = max_phases
        self.once = once
        self.max_idle_s = max_idle_s
        self.run_id = run_id  # claim only this run's phases (POST /ops/runs/{run_id}/claim)
        grace = getattr(settings, "phase_kill_grace_s", None)
        self.kill_grace_s = float(grace) if grace is not None else DEFAULT_KILL_GRACE_S
        self.stopping = threading.Event()
        self.current: PhaseContext | None = None
        self.done = 0
        self.abandoned = 0  # handlers that did not stop when told and were left behind
        self._idle = False
        self.beater = _Beater(client)
        self.beater.start()
        self._manifests: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

    def run(self) -> int:
        """Claim and run phases until stopped (or, ``once``, until a claim finds nothing); returns
        how many phases this runner completed."""
        try:
            return self._run()
        except Interrupted:
            return self.done

    def stop(self) -> None:
        """Finish the current phase (and report the finished ones), then return from :meth:`run`."""
        self.stopping.set()

    def close(self) -> None:
        """Stop the heartbeat thread; the runner is not used after this."""
        self.beater.close()

    def phase_context(self, claim: dict[str, Any]) -> PhaseContext:
        """The one place a claim becomes the :class:`PhaseContext` its handler sees."""
        return PhaseContext(
            run_id=claim["run_id"], phase=claim["phase"], phase_type=claim["phase_type"],
            attempt=claim["attempt"], params=claim.get("params") or {},
            input_manifest=self._manifest(claim), previous_outputs=claim.get("previous_outputs") or {},
            environment=claim.get("environment", "dev"), spec_slug=claim.get("spec_slug", ""),
            git_sha=claim.get("git_sha", ""), workspace=claim.get("workspace", "default"), client=self.client,
            lease_token=claim["lease_token"], settings=self.settings, lake=self.lake,
        )

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
                                                max_phases=self.max_phases, run_id=self.run_id,
                                                cached_runs=self._cached())
                    self._idle = False
                except Exception as exc:  # the server is restarting, or the network blinked
                    log.warning("claim failed", extra={"error": str(exc)})
                    self.stopping.wait(1.0)
                    continue
                if not pending:
                    if self.once or (self.max_idle_s is not None and time.monotonic() - idle_since > self.max_idle_s):
                        break
                    continue
                self.beater.hold(pending)
                flush_by = time.monotonic() + min(c.get("lease_ttl_s", 30.0) for c in pending) / 3
            idle_since = time.monotonic()
            claim = pending.pop(0)
            if self.beater.is_lost(claim["lease_token"]):  # it waited its turn and its lease went away
                log.warning("lease lost before the phase started", extra={"run_id": claim["run_id"]})
                self.beater.drop(claim["lease_token"])
                continue
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
        return self._complete(finished, claim_next)

    def _complete(self, finished: dict[str, Any], claim_next: bool) -> list[dict[str, Any]]:
        """Report one finished phase; a refusal fails the phase, nothing here stops the worker."""
        try:
            answer = _retrying(lambda: self.client.complete(
                finished["run_id"], finished["lease_token"], finished["output_manifest"], finished["events"],
                claim_next=self._claim_next() if claim_next else None))
        except LeaseLostError:
            log.warning("lease lost before complete", extra={"run_id": finished["run_id"]})
            return []
        except ContractError as exc:
            self._refused(finished, exc.status, exc.code, exc.message)
            return []
        except OSError as exc:  # the server stayed away: the reaper requeues the phase
            log.error("could not report a completion", extra={"run_id": finished["run_id"], "error": str(exc)})
            return []
        finally:
            self.beater.drop(finished["lease_token"])
        self.done += 1
        nxt: list[dict[str, Any]] = answer.get("next") or []
        self.beater.hold(nxt)
        return nxt

    def _refused(self, finished: dict[str, Any], status: int, code: str, message: str) -> None:
        """The server refused a completion: a 4xx other than 409 fails the phase with its message (the
        same output would be refused again, so not retryable); a 409 or a 5xx is left to the lease."""
        if status == 409 or status >= 500:
            log.warning("completion not accepted", extra={"run_id": finished["run_id"], "error": message})
            return
        error = f"the server refused the phase's completion ({status} {code}): {message}"
        log.error("completion refused", extra={"run_id": finished["run_id"], "error": error})
        try:
            _retrying(lambda: self.client.fail(finished["run_id"], finished["lease_token"], error, False), 30)
        except (ContractError, OSError) as exc:
            log.warning("could not fail the refused phase", extra={"run_id": finished["run_id"], "error": str(exc)})

    def _claim_next(self) -> dict[str, Any] | None:
        if self.run_id is not None:
            return None  # claim_next is not scoped to a run: claim this run's next phase on its own
        out: dict[str, Any] = {"executor_id": self.executor_id, "capabilities": self.capabilities,
                               "max_phases": self.max_phases}
        cached = self._cached()
        if cached:
            out["cached_runs"] = cached
        return out

    def _cached(self) -> list[str]:
        """The runs whose input manifest this worker holds (the newest few): the server leaves it out
        of their claims, so a chain of phases gets its run's manifest once."""
        return list(self._manifests)[-_CACHED_SENT:]

    def _manifest(self, claim: dict[str, Any]) -> dict[str, Any]:
        run_id = claim["run_id"]
        manifest = claim.get("input_manifest")
        if manifest is None:
            manifest = self._manifests.get(run_id)
            if manifest is None:  # not held after all (evicted): ask the run record
                try:
                    manifest = self.client.get_run(run_id).get("input_manifest") or {}
                except Exception as exc:  # the handler then fails on its own terms, not the worker
                    log.error("could not fetch the run's input manifest", extra={"run_id": run_id, "error": str(exc)})
                    return {}
        self._manifests[run_id] = manifest
        self._manifests.move_to_end(run_id)
        while len(self._manifests) > _CACHED_KEPT:
            self._manifests.popitem(last=False)
        return manifest

    def _flush(self, done: list[dict[str, Any]], claim_next: bool) -> list[dict[str, Any]]:
        """Complete a batch of finished phases in one call (and lease the next batch in it)."""
        batch = list(done)
        done.clear()
        try:
            answer = _retrying(lambda: self.client.complete_many(batch, self._claim_next() if claim_next else None))
        except ContractError as exc:
            if exc.status == 409 or exc.status >= 500:
                log.warning("batched completion not accepted", extra={"error": exc.message})
                for f in batch:
                    self.beater.drop(f["lease_token"])
                return []
            for f in batch:  # the whole batch was refused (one bad item): report each on its own
                self._complete(f, claim_next=False)
            return []
        except OSError as exc:
            log.error("could not report completions", extra={"error": str(exc)})
            for f in batch:
                self.beater.drop(f["lease_token"])
            return []
        for f, r in zip(batch, answer["results"], strict=False):
            if "error" in r:
                err = r["error"]
                if err["code"] in ("lease_lost", "run_not_found"):
                    log.warning("completion refused", extra={"run_id": r["run_id"], "error": err["message"]})
                else:
                    self._refused(f, 422, err["code"], err["message"])
            else:
                self.done += 1
            self.beater.drop(f["lease_token"])
        nxt: list[dict[str, Any]] = answer.get("next") or []
        self.beater.hold(nxt)
        return nxt

    def _run_phase(self, claim: dict[str, Any]) -> dict[str, Any] | None:
        """Run the handler with heartbeats; report a failure itself; return the completion to send."""
        ctx = self.phase_context(claim)
        timeout_s = claim.get("timeout_s")
        self.current = ctx
        self.beater.watch(ctx, claim.get("lease_ttl_s", 30.0))
        handler = self.handlers.get(claim["phase_type"])
        try:
            if handler is None:
                raise PhaseError(f"this executor has no handler for phase type {claim['phase_type']!r}")
            # a phase that may time out runs in a thread the runner watches; the others run here
            manifest = self._call_watched(handler, ctx, float(timeout_s)) if timeout_s else handler(ctx) or {}
            ctx.check()
        except PhaseCancelled as exc:
            lost = self.beater.unwatch()
            if lost:
                self.beater.drop(ctx.lease_token)
                return None
            if isinstance(exc, PhaseTimedOut):
                self._fail(ctx, str(exc), retryable=True, kind="timeout")
                return None
            if self.stopping.is_set() and ctx.cancel_reason == "worker shut down":
                try:  # give the phase back untouched: another worker starts it over
                    _retrying(lambda: self.client.release(ctx.run_id, ctx.lease_token, "worker shut down"), 10)
                except (LeaseLostError, ContractError, OSError):
                    pass
                self.beater.drop(ctx.lease_token)
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
            self.beater.drop(ctx.lease_token)
            return None
        if ctx.artifacts:
            manifest.setdefault("artifacts", [
                {"name": a["name"], "sha256": a["sha256"], "size_bytes": a["size_bytes"]} for a in ctx.artifacts])
        events, _ = ctx.drain()
        return {"run_id": ctx.run_id, "lease_token": ctx.lease_token, "output_manifest": manifest, "events": events}

    def _call_watched(self, handler: Handler, ctx: PhaseContext, timeout_s: float) -> dict[str, Any]:
        """Run ``handler`` in a thread of its own and wait for it; past ``timeout_s`` cancel the phase,
        and abandon a handler that is still running a grace later. Returns its manifest; raises what
        the handler raised, :class:`PhaseTimedOut` once it timed out, or :class:`PhaseCancelled` for a
        phase stopped for another reason whose handler had to be abandoned."""
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def target() -> None:
            try:
                try:
                    outcome["manifest"] = handler(ctx) or {}
                except BaseException as exc:  # handed to the runner's thread, which reports it
                    outcome["error"] = exc
                finished.set()
            except PhaseCancelled:  # the interrupt of _abandon arrived as the handler ended
                finished.set()

        thread = threading.Thread(target=target, name=f"phase-{ctx.phase}", daemon=True)
        deadline = time.monotonic() + timeout_s
        thread.start()
        timed_out = False
        give_up_at: float | None = None
        while not finished.wait(0.05):
            now = time.monotonic()
            if not ctx.cancelled.is_set() and now >= deadline:
                timed_out = True
                ctx.cancel_reason = f"phase timed out after {timeout_s:g} s"
                ctx.cancelled.set()
                log.warning("phase timed out", extra={"run_id": ctx.run_id, "phase": ctx.phase,
                                                      "timeout_s": timeout_s})
            if ctx.cancelled.is_set() and give_up_at is None:
                give_up_at = now + self.kill_grace_s + _STOP_WAIT_S
            if give_up_at is not None and now >= give_up_at:
                self._abandon(thread, ctx, finished)
                break
        if timed_out:  # whatever the handler did after it was told to stop
            raise PhaseTimedOut(ctx.cancel_reason) from outcome.get("error")
        if "error" in outcome:
            raise outcome["error"]
        if "manifest" not in outcome:  # abandoned
            raise PhaseCancelled(ctx.cancel_reason or "phase cancelled")
        manifest: dict[str, Any] = outcome["manifest"]
        return manifest

    def _abandon(self, thread: threading.Thread, ctx: PhaseContext, finished: threading.Event) -> None:
        """The handler ignored the stop: raise :class:`PhaseCancelled` inside its thread (Python code
        sees it at its next instruction; a call into C sees it when it returns) and leave it."""
        ident = thread.ident
        if ident is not None and not finished.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(PhaseCancelled))
        if not finished.wait(_ABANDON_WAIT_S):
            self.abandoned += 1
            log.error("handler abandoned: it did not stop when told", extra={
                "run_id": ctx.run_id, "phase": ctx.phase, "reason": ctx.cancel_reason})

    def _fail(self, ctx: PhaseContext, error: str, retryable: bool, kind: FailKind = "error") -> None:
        events, _ = ctx.drain()
        try:
            try:
                _retrying(lambda: self.client.fail(ctx.run_id, ctx.lease_token, error, retryable, events, kind))
            except ContractError as exc:
                if not events or isinstance(exc, LeaseLostError) or exc.status in (404, 409) or exc.status >= 500:
                    raise
                # the server refused the events riding along (e.g. a NUL byte): fail without them
                _retrying(lambda: self.client.fail(ctx.run_id, ctx.lease_token, error, retryable, kind=kind), 30)
        except LeaseLostError:
            pass
        except (ContractError, OSError) as exc:
            log.warning("could not fail the phase", extra={"run_id": ctx.run_id, "error": str(exc)})
        finally:
            self.beater.drop(ctx.lease_token)


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
        except OSError:
            if time.monotonic() > deadline:
                raise
        log.warning("server unreachable; retrying", extra={"delay_s": delay})
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


class _Beater(threading.Thread):
    """One long-lived thread per worker: every ttl/3 it extends EVERY lease the worker holds (the
    running phase's, with its buffered events and progress, and those of a batched claim's phases
    waiting their turn or their batched completion) in one call."""

    def __init__(self, client: ExecutorApi) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.client = client
        self._cv = threading.Condition()
        self._ctx: PhaseContext | None = None
        self._held: dict[str, str] = {}  # lease_token -> run_id
        self._lost: set[str] = set()  # held leases the server answered are gone
        self._interval = 10.0
        self._next_beat: float | None = None
        self._closed = False

    def hold(self, claims: list[dict[str, Any]]) -> None:
        """Keep these leases alive until :meth:`drop`."""
        if not claims:
            return
        with self._cv:
            for c in claims:
                self._held[c["lease_token"]] = c["run_id"]
                self._interval = max(0.05, float(c.get("lease_ttl_s") or 30.0) / 3)
            if self._next_beat is None:
                self._next_beat = time.monotonic() + self._interval
            self._cv.notify()

    def drop(self, lease_token: str) -> None:
        with self._cv:
            self._held.pop(lease_token, None)
            self._lost.discard(lease_token)

    def is_lost(self, lease_token: str) -> bool:
        with self._cv:
            return lease_token in self._lost

    def watch(self, ctx: PhaseContext, ttl_s: float) -> None:
        with self._cv:
            self._ctx = ctx
            if ctx.lease_token not in self._held:
                self._held[ctx.lease_token] = ctx.run_id
                self._interval = max(0.05, ttl_s / 3)
            if self._next_beat is None:
                self._next_beat = time.monotonic() + self._interval
            self._cv.notify()

    def unwatch(self) -> bool:
        """Stop carrying the current phase's events; True when its lease was lost meanwhile."""
        with self._cv:
            ctx, self._ctx = self._ctx, None
            self._cv.notify()
            return ctx is not None and ctx.lease_token in self._lost

    def _wait_for_beat(self) -> tuple[PhaseContext | None, list[tuple[str, str]]] | None:
        """Sleep until the next beat is due; returns the running phase and every held lease to extend
        (None once closed)."""
        with self._cv:
            while True:
                if self._closed:
                    return None
                if not self._held:
                    self._next_beat = None
                    self._cv.wait()
                    continue
                now = time.monotonic()
                if self._next_beat is None:
                    self._next_beat = now + self._interval
                ctx = self._ctx
                if now >= self._next_beat:
                    self._next_beat = now + self._interval
                    leases = [(run_id, token) for token, run_id in self._held.items() if token not in self._lost]
                    if leases:
                        return ctx, leases
                    continue
                self._cv.wait(max(0.0, self._next_beat - now))

    def _mark_lost(self, lease_token: str, message: str) -> None:
        with self._cv:
            if lease_token not in self._held:
                return  # finished meanwhile: the answer is about a lease already given back
            self._lost.add(lease_token)
            ctx = self._ctx
        if ctx is not None and ctx.lease_token == lease_token:
            ctx.cancel_reason = f"lease lost: {message}"
            ctx.cancelled.set()

    def close(self) -> None:
        """End the thread (after the runner is done with it)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def run(self) -> None:
        while True:
            beat = self._wait_for_beat()
            if beat is None:
                return
            ctx, leases = beat
            events, progress = ctx.drain() if ctx is not None else ([], None)
            try:
                if len(leases) == 1:
                    run_id, token = leases[0]
                    mine = ctx is not None and ctx.lease_token == token
                    self.client.heartbeat(run_id, token, progress if mine else None, events if mine else None)
                else:
                    items = [{"run_id": run_id, "lease_token": token}
                             | ({"progress": progress, "events": events}
                                if ctx is not None and ctx.lease_token == token else {})
                             for run_id, token in leases]
                    for (_, token), answer in zip(leases, self.client.heartbeat_many(items), strict=False):
                        err = answer.get("error")
                        if err and err["code"] in ("lease_lost", "run_not_found"):
                            self._mark_lost(token, err["message"])
                        elif err:
                            log.warning("heartbeat refused", extra={"run_id": answer["run_id"],
                                                                    "error": err["message"]})
            except LeaseLostError as exc:
                self._mark_lost(leases[0][1], exc.message)
            except ContractError as exc:
                if exc.status == 404 and len(leases) == 1:
                    self._mark_lost(leases[0][1], exc.message)
                log.warning("heartbeat refused", extra={"error": exc.message})
                if exc.status >= 500 and ctx is not None:
                    ctx.put_back(events)
            except Exception as exc:  # transient: the next beat may get through before the lease expires
                log.warning("heartbeat failed", extra={"error": str(exc)})
                if ctx is not None:
                    ctx.put_back(events)
