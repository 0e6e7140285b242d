"""The executor contract as a worker sees it: the calls it makes (:class:`ExecutorApi`, a
``typing.Protocol``) and the errors they raise. Two clients implement it: the HTTP client
(worker/client.py) and the in-memory one over the services (worker/inmemory.py); the phase runner
(worker/runner.py) and the handlers' :class:`~lakehouse.worker.context.PhaseContext` know only this."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

FailKind = Literal["error", "timeout"]


class ContractError(Exception):
    """The server refused a call: ``status`` (HTTP), ``code`` and ``message`` from the error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class LeaseLostError(ContractError):
    """The lease is gone (expired, revoked by a cancel, or finished): stop the phase, report nothing."""


class ServerUnreachable(OSError):
    """The call did not get an answer (connection refused or reset, timeout): worth retrying."""


class ExecutorApi(Protocol):
    """Every call a worker and its handlers make; see docs/executor-contract.md for each."""

    def claim(self, executor_id: str, capabilities: list[str], wait_s: float = 0, max_phases: int = 1,
              run_id: str | None = None, cached_runs: list[str] | None = None) -> list[dict[str, Any]]: ...

    def heartbeat(self, run_id: str, lease_token: str, progress: dict[str, Any] | None = None,
                  events: list[dict[str, Any]] | None = None) -> dict[str, Any]: ...

    def heartbeat_many(self, leases: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def complete(self, run_id: str, lease_token: str, output_manifest: dict[str, Any],
                 events: list[dict[str, Any]] | None = None, claim_next: dict[str, Any] | None = None
                 ) -> dict[str, Any]: ...

    def complete_many(self, completions: list[dict[str, Any]], claim_next: dict[str, Any] | None = None
                      ) -> dict[str, Any]: ...

    def fail(self, run_id: str, lease_token: str, error: str, retryable: bool = True,
             events: list[dict[str, Any]] | None = None, kind: FailKind = "error") -> dict[str, Any]: ...

    def release(self, run_id: str, lease_token: str, reason: str) -> dict[str, Any]: ...

    def get_run(self, run_id: str) -> dict[str, Any]: ...

    def post_events(self, run_id: str, events: list[dict[str, Any]], lease_token: str | None = None) -> int: ...

    def mark_stopped(self, executor_id: str, reason: str) -> dict[str, Any]: ...

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def phase_query(self, run_id: str, lease_token: str, sql: str, preview_rows: int = 20,
                    name: str = "result.parquet") -> dict[str, Any]: ...

    def lease_connection(self, run_id: str, lease_token: str, name: str) -> dict[str, Any]: ...
