"""An in-memory executor client: the calls of :class:`~lakehouse.worker.contract.ExecutorApi`
answered by the services directly, in this process, with no HTTP (procrastinate's
``InMemoryConnector`` plays the same part for its workers). The phase runner and the real handlers
run against it exactly as against the server: arguments and answers go through JSON as on the wire,
a service error becomes the :class:`ContractError` (or :class:`LeaseLostError`) the HTTP client
would raise, and every call is made as ``principal``, so the roles and workspace scope hold.

It is for tests and embedding (tests/e2e/driver.py drives runs with it); a long-poll claim polls
the database every ``poll_s`` until ``wait_s`` is over instead of waiting for a wake-up."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from lakehouse.domain.principal import Principal
from lakehouse.services import artifacts, executors, lease_secrets, phase_query, protocol, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import ServiceError
from lakehouse.worker.contract import ContractError, FailKind, LeaseLostError

T = TypeVar("T")


def _wire(value: Any) -> Any:
    """What the other side of the wire would see: JSON in, JSON out."""
    return orjson.loads(orjson.dumps(value))


def _events(events: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Executor events as the server's schema hands them to the services (``ts`` parsed)."""
    if not events:
        return None
    return [{"phase": None, "level": "info", "message": "", "payload": {}, **e,
             "ts": datetime.fromisoformat(e["ts"]) if isinstance(e.get("ts"), str) else e.get("ts")}
            for e in _wire(events)]


class InMemoryClient:
    """The executor contract over the services of ``ctx``, as ``principal`` (an executor account)."""

    def __init__(self, ctx: Context, principal: Principal, *, poll_s: float = 0.02) -> None:
        self.ctx = ctx
        self.principal = principal
        self.poll_s = poll_s

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ServiceError as exc:
            cls = LeaseLostError if exc.status == 409 and exc.code.startswith("lease") else ContractError
            raise cls(exc.status, exc.code, exc.message) from None

    def claim(self, executor_id: str, capabilities: list[str], wait_s: float = 0, max_phases: int = 1,
              run_id: str | None = None, cached_runs: list[str] | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait_s
        while True:
            claims = self._call(lambda: protocol.claim(self.ctx, self.principal, executor_id, list(capabilities),
                                                       max_phases=max_phases, run_id=run_id,
                                                       cached=cached_runs or ()))
            if claims or time.monotonic() >= deadline:
                return _wire(claims)  # type: ignore[no-any-return]
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def heartbeat(self, run_id: str, lease_token: str, progress: dict[str, Any] | None = None,
                  events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return _wire(self._call(lambda: protocol.heartbeat(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, _wire(progress), _events(events))))

    def heartbeat_many(self, leases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items = [{"run_id": x["run_id"], "lease_token": x["lease_token"], "progress": _wire(x.get("progress")),
                  "events": _events(x.get("events"))} for x in leases]
        answer = self._call(lambda: protocol.heartbeat_many(self.ctx, self.principal, items))
        return _wire(answer["results"])  # type: ignore[no-any-return]

    def complete(self, run_id: str, lease_token: str, output_manifest: dict[str, Any],
                 events: list[dict[str, Any]] | None = None, claim_next: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        nxt, cached = _claim_next(claim_next)
        return _wire(self._call(lambda: protocol.complete(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, _wire(output_manifest), _events(events),
            claim_next=nxt, cached=cached)))

    def complete_many(self, completions: list[dict[str, Any]], claim_next: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        items = [{"run_id": c["run_id"], "lease_token": c["lease_token"],
                  "output_manifest": _wire(c.get("output_manifest") or {}), "events": _events(c.get("events"))}
                 for c in completions]
        nxt, cached = _claim_next(claim_next)
        return _wire(self._call(lambda: protocol.complete_many(  # type: ignore[no-any-return]
            self.ctx, self.principal, items, nxt, cached)))

    def fail(self, run_id: str, lease_token: str, error: str, retryable: bool = True,
             events: list[dict[str, Any]] | None = None, kind: FailKind = "error") -> dict[str, Any]:
        return _wire(self._call(lambda: protocol.fail(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, error, retryable, _events(events), kind=kind)))

    def release(self, run_id: str, lease_token: str, reason: str) -> dict[str, Any]:
        return _wire(self._call(lambda: protocol.release(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, reason)))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return _wire(self._call(lambda: runs.get_run(self.ctx, run_id, self.principal)))  # type: ignore[no-any-return]

    def post_events(self, run_id: str, events: list[dict[str, Any]], lease_token: str | None = None) -> int:
        return self._call(lambda: protocol.post_events(self.ctx, self.principal, run_id, _events(events) or [],
                                                       lease_token))

    def mark_stopped(self, executor_id: str, reason: str) -> dict[str, Any]:
        return _wire(self._call(lambda: executors.mark_stopped(  # type: ignore[no-any-return]
            self.ctx, self.principal, executor_id, reason)))

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        self._call(lambda: asyncio.run(artifacts.upload(self.ctx, sha, chunks(), self.principal, run_id)))
        art, _ = self._call(lambda: artifacts.register(self.ctx, {
            "run_id": run_id, "phase": phase, "name": name, "sha256": sha, "size_bytes": len(data),
            "media_type": media_type, "metadata": _wire(metadata or {})}, self.principal))
        return _wire(art)  # type: ignore[no-any-return]

    def phase_query(self, run_id: str, lease_token: str, sql: str, preview_rows: int = 20,
                    name: str = "result.parquet") -> dict[str, Any]:
        return _wire(self._call(lambda: asyncio.run(phase_query.run_for_lease(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, sql, preview_rows, name))))

    def lease_connection(self, run_id: str, lease_token: str, name: str) -> dict[str, Any]:
        return _wire(self._call(lambda: lease_secrets.for_lease(  # type: ignore[no-any-return]
            self.ctx, self.principal, run_id, lease_token, name)))


def _claim_next(body: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    if not body:
        return None, []
    body = dict(body)
    cached = list(body.pop("cached_runs", None) or [])
    return {"max_phases": 1, **body}, cached
