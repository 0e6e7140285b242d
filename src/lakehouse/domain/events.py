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
    RUN_HELD = "RUN_HELD"  # a queue cap in hold mode keeps the run out of the queue (services/caps.py)
    RUN_RELEASED = "RUN_RELEASED"  # a held run's queue cap has room again: its first phase is queued
    # posted by executors only (see ExecutorEventType)
    DQ_RESULT = "DQ_RESULT"
    SCHEMA_DRIFT = "SCHEMA_DRIFT"
    METRIC = "METRIC"
    LINEAGE = "LINEAGE"


class ExecutorEventType(StrEnum):
    """Types an executor may post itself; state-change events are written only by the server."""

    PHASE_PROGRESS = "PHASE_PROGRESS"
    PHASE_LOG = "PHASE_LOG"
    DQ_RESULT = "DQ_RESULT"
    SCHEMA_DRIFT = "SCHEMA_DRIFT"
    METRIC = "METRIC"
    LINEAGE = "LINEAGE"


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LEVELS = tuple(lv.value for lv in Level)
EXECUTOR_EVENT_TYPES = frozenset(t.value for t in ExecutorEventType)
