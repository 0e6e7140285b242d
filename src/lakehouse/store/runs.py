"""Statements that create runs (services/runs.py keeps the rules: who may start what, the first
event, the wake-up). The queue moves them on from there (store/queue.py); their reads for people are
in store/run_reads.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from lakehouse.store.tables import phases, runs


@dataclass(frozen=True)
class NewPhase:
    name: str
    type: str
    capability: str
    params: dict[str, Any]
    timeout_s: float | None
    max_attempts: int
    status: str
    available_at: datetime | None


def insert(conn: Connection, *, run_id: str, workspace_id: int, environment: str, spec_slug: str, git_sha: str,
           status: str, input_manifest: dict[str, Any], idempotency_key: str | None, created_by: str,
           labels: dict[str, str] | None, phases_: Sequence[NewPhase], now: datetime) -> None:
    """Insert a run and its phases (in order, attempt 0). A repeated idempotency key in the workspace
    raises ``IntegrityError`` (the unique constraint)."""
    conn.execute(runs.insert().values(
        id=run_id, workspace_id=workspace_id, environment=environment, spec_slug=spec_slug, git_sha=git_sha,
        status=status, input_manifest=input_manifest, idempotency_key=idempotency_key, created_by=created_by,
        created_at=now, last_seq=0, labels=labels,
    ))
    conn.execute(phases.insert(), [
        {"run_id": run_id, "idx": i, "name": p.name, "type": p.type, "capability": p.capability,
         "params": p.params, "timeout_s": p.timeout_s, "max_attempts": p.max_attempts, "status": p.status,
         "attempt": 0, "available_at": p.available_at, "workspace_id": workspace_id}
        for i, p in enumerate(phases_)
    ])
