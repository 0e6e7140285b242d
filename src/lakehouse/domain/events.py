"""Event types of a run's trail."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    RUN_CREATED = "RUN_CREATED"
    RUN_STARTED = "RUN_STARTED"
    PHASE_CLAIMED = "PHASE_CLAIMED"
    PHASE_STARTED = "PHASE_STARTED"
    PHASE_PROGRESS = "PHASE_PROGRESS"
    PHASE_LOG = "PHASE_LOG"
    PHASE_SUCCEEDED = "PHASE_SUCCEEDED"
    PHASE_FAILED = "PHASE_FAILED"
    PHASE_REQUEUED = "PHASE_REQUEUED"
    PHASE_SKIPPED = "PHASE_SKIPPED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    ARTIFACT_REGISTERED = "ARTIFACT_REGISTERED"
    CONNECTION_USED = "CONNECTION_USED"
    RUN_SUCCEEDED = "RUN_SUCCEEDED"
    RUN_FAILED = "RUN_FAILED"
    RUN_CANCELLED = "RUN_CANCELLED"


LEVELS = ("debug", "info", "warning", "error")

# Types an executor may post itself; state-change events are written only by the server.
EXECUTOR_EVENT_TYPES = frozenset({"PHASE_PROGRESS", "PHASE_LOG", "DQ_RESULT", "SCHEMA_DRIFT", "METRIC", "LINEAGE"})
