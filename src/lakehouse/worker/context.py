"""What a handler sees: its phase, a logger that rides along with heartbeats, artifacts, cancellation."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse.worker.contract import ExecutorApi


class PhaseCancelled(Exception):
    """Raised inside a handler when the lease was lost, the run cancelled or the phase timed out."""


class PhaseError(Exception):
    """A handler failure; ``retryable=False`` fails the run without another attempt."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class PhaseContext:
    run_id: str
    phase: str
    phase_type: str
    attempt: int
    params: dict[str, Any]
    input_manifest: dict[str, Any]
    previous_outputs: dict[str, Any]
    environment: str
    spec_slug: str
    git_sha: str
    workspace: str = "default"  # from the server's run record in the claim, never from params
    settings: Any = None  # the worker's Settings, built once at its edge (storage, egress, limits)
    lake: Any = None  # how this process reaches the lake (lakehouse.lake.lease), built once at the worker's edge
    workdir_path: Path | None = None  # created on first use of ``workdir``
    client: ExecutorApi | None = None
    lease_token: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    _events: list[dict[str, Any]] = field(default_factory=list)
    _progress: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    _owns_workdir: bool = False
    _catalog: Any = None

    @property
    def catalog(self) -> Any:
        """The Iceberg catalog of this phase: from the worker's lake, under this phase's lease (a REST
        catalog scoped to the run's workspace and environment). Without a lake — handlers driven in the
        control plane's own process — the control plane's catalog from ``settings``."""
        if self._catalog is None:
            lake = self.lake
            if lake is None:
                from lakehouse.lake.lease import DirectLake
                from lakehouse.settings import Settings

                lake = DirectLake(self.settings if isinstance(self.settings, Settings) else Settings())
            self._catalog = lake.catalog(self.run_id, self.lease_token, self.workspace)
        return self._catalog

    @property
    def workdir(self) -> Path:
        """A scratch folder for this phase attempt, removed when the phase ends."""
        if self.workdir_path is None:
            self.workdir_path = Path(tempfile.mkdtemp(prefix=f"lh-{self.phase}-"))
            self._owns_workdir = True
        return self.workdir_path

    def cleanup(self) -> None:
        if self._owns_workdir and self.workdir_path is not None:
            shutil.rmtree(self.workdir_path, ignore_errors=True)

    def log(self, message: str, level: str = "info", type_: str = "PHASE_LOG", **payload: Any) -> None:
        with self._lock:
            self._events.append({"event_id": uuid.uuid4().hex, "type": type_, "phase": self.phase,
                                 "ts": datetime.now(UTC).isoformat(), "level": level, "message": message,
                                 "payload": payload})

    def progress(self, message: str, fraction: float | None = None, **extra: Any) -> None:
        with self._lock:
            self._progress = {"message": message, "fraction": fraction, **extra}

    def drain(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        with self._lock:
            events, progress = self._events, self._progress
            self._events, self._progress = [], None
        return events, progress

    def put_back(self, events: list[dict[str, Any]]) -> None:
        """Events drained for a heartbeat the server did not take: they ride along with the next one."""
        if events:
            with self._lock:
                self._events[:0] = events

    def check(self) -> None:
        """Call in long loops: raises :class:`PhaseCancelled` once the phase must stop."""
        if self.cancelled.is_set():
            raise PhaseCancelled(self.cancel_reason or "phase cancelled")

    def leased_connection(self, name: str, kind: str | None = None) -> dict[str, Any]:
        """The stored connection ``name`` as the server hands it to this lease (``type``, ``config``,
        ``secrets``, and ``url`` for databases; the run must have declared it; kept in memory only).
        ``kind``: the type it must be. A refusal is a :class:`PhaseError`, retryable when the server
        failed; a lost lease propagates."""
        from lakehouse.worker.client import ContractError, LeaseLostError

        if self.client is None:
            raise PhaseError("a connection by name needs the control plane", retryable=False)
        try:
            handed = self.client.lease_connection(self.run_id, self.lease_token, name)
        except LeaseLostError:
            raise
        except ContractError as exc:
            raise PhaseError(f"connection {name}: {exc.code}: {exc.message}", retryable=exc.status >= 500) from None
        if kind is not None and handed.get("type") != kind:
            raise PhaseError(f"connection {name} is a {handed.get('type')} connection, not {kind}", retryable=False)
        return handed

    def add_artifact(self, name: str, path: Path, media_type: str, metadata: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
        if self.client is None:
            raise RuntimeError("no server to upload the artifact to")
        art = self.client.upload_artifact(self.run_id, self.phase, name, path, media_type, metadata)
        self.artifacts.append(art)
        return art
