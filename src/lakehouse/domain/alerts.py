"""Alerts as data: rule kinds with their parameters, severities, alert and notification statuses.

Pure: no I/O. The services evaluate rules (services/alerts.py on run events, services/alert_eval.py
on a timer) and deliver notifications (services/notify.py); docs/operations.md describes each rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class AlertKind(StrEnum):
    RUN_FAILED = "run_failed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DURATION_OVER_BASELINE = "duration_over_baseline"
    DQ_FAILED = "dq_failed"
    FRESHNESS_BREACHED = "freshness_breached"
    EXECUTOR_SILENT = "executor_silent"
    QUEUE_DEPTH = "queue_depth"
    OLDEST_QUEUED = "oldest_queued"
    SCORE_BELOW = "score_below"


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ALERT_ACTIVE = frozenset({AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED})


class NotificationStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt (``next_attempt_at``)
    SENDING = "sending"  # taken by a delivery loop until ``next_attempt_at`` (then taken again)
    SENT = "sent"
    FAILED = "failed"  # every attempt failed; the attempts say why


NOTIFICATION_DUE = frozenset({NotificationStatus.PENDING, NotificationStatus.SENDING})


class NotificationEvent(StrEnum):
    FIRED = "fired"
    REPEATED = "repeated"  # the condition happened again after the rule's grouping window
    ESCALATED = "escalated"
    RESOLVED = "resolved"


# Kinds fired from a run's events (in the transaction that records them) vs. by the timed evaluation.
RUN_KINDS = frozenset({AlertKind.RUN_FAILED, AlertKind.RETRIES_EXHAUSTED, AlertKind.DURATION_OVER_BASELINE,
                       AlertKind.DQ_FAILED})
TIMED_KINDS = frozenset({AlertKind.FRESHNESS_BREACHED, AlertKind.EXECUTOR_SILENT, AlertKind.QUEUE_DEPTH,
                         AlertKind.OLDEST_QUEUED})


@dataclass(frozen=True)
class Param:
    name: str
    default: float | str | None
    minimum: float | None = None
    help: str = ""


# The parameters each kind takes (numbers unless the default is a string or None for an optional text).
PARAMS: dict[AlertKind, tuple[Param, ...]] = {
    AlertKind.RUN_FAILED: (),
    AlertKind.RETRIES_EXHAUSTED: (),
    AlertKind.DURATION_OVER_BASELINE: (
        Param("k", 2.0, 1.0, "fires when the run took more than k x the baseline"),
        Param("history", 10, 3, "the baseline is the median of this many previous successful runs"),
        Param("min_history", 3, 1, "no baseline (and no alert) with fewer successful runs")),
    AlertKind.DQ_FAILED: (Param("include_warnings", 0, 0, "1: failed warn-severity checks fire too"),),
    AlertKind.FRESHNESS_BREACHED: (Param("slo_s", 900, 1, "a table older than this breaches the SLO"),
                                   Param("table", None, None, "only this table (or a layer: bronze.*)")),
    AlertKind.EXECUTOR_SILENT: (Param("silent_s", 120, 1, "no heartbeat or claim for this long"),
                                Param("forget_s", 86_400, 1, "executors silent longer are no longer watched")),
    AlertKind.QUEUE_DEPTH: (Param("threshold", 100, 1, "queued runnable phases"),
                            Param("capability", None, None, "only phases needing this capability")),
    AlertKind.OLDEST_QUEUED: (Param("threshold_s", 600, 1, "age of the oldest runnable queued phase"),
                              Param("capability", None, None, "only phases needing this capability")),
    AlertKind.SCORE_BELOW: (Param("threshold", 60, 0, "fires for a run scoring below this (0-100)"),),
}


class InvalidRule(ValueError):
    """A rule that cannot be evaluated: unknown kind, parameter or severity, a value out of range."""


def clean_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The full parameters of a rule of ``kind``: defaults filled in, unknown names and values out of
    range refused (:class:`InvalidRule`)."""
    try:
        k = AlertKind(kind)
    except ValueError:
        raise InvalidRule(f"unknown rule kind {kind!r}; use one of {', '.join(AlertKind)}") from None
    given = dict(params or {})
    known = {p.name: p for p in PARAMS[k]}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InvalidRule(f"unknown parameter(s) for {k}: {', '.join(unknown)}"
                          + (f"; {k} takes {', '.join(known)}" if known else f"; {k} takes none"))
    out: dict[str, Any] = {}
    for p in PARAMS[k]:
        value = given.get(p.name, p.default)
        if p.default is None or isinstance(p.default, str):
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 300):
                raise InvalidRule(f"{p.name} must be a non-empty text of at most 300 characters")
            out[p.name] = value.strip() if isinstance(value, str) else None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRule(f"{p.name} must be a number")
        if p.minimum is not None and value < p.minimum:
            raise InvalidRule(f"{p.name} must be at least {p.minimum:g}")
        out[p.name] = value
    return out


def severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise InvalidRule(f"unknown severity {value!r}; use one of {', '.join(Severity)}") from None


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def table_matches(pattern: str | None, table: str) -> bool:
    """``bronze.*`` matches a layer, anything else one table; None matches every table."""
    if not pattern:
        return True
    if pattern.endswith(".*"):
        return table.startswith(pattern[:-1])
    return table == pattern
