"""One icon, one colour and one word per status, for the Control Room (web/render.py's ``status``
filter: the icon and the word, coloured by the CSS class ``s-<status>``) and the terminal
(cli/render.py: the icon and the word in the Rich colour). The icon always comes with the word, so
colour is never the only signal.

The keys are the values of the domain's status enums (runs, phases, attempts, the derived
``retrying``) plus the states of executors, connections, freshness and checks that pages show. Alerts
have their own: a severity, an alert's state and a notification's state (:func:`alert_look`; the web's
CSS class is ``<kind>-<value>``, e.g. ``sev-critical``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.domain.alerts import AlertStatus, NotificationStatus, Severity
from lakehouse.domain.states import AttemptStatus, PhaseStatus, PhaseView, RunStatus


@dataclass(frozen=True)
class Look:
    icon: str
    colour: str  # a Rich colour name (the web's colour is its CSS class ``s-<status>``)
    word: str


_RUN_AND_PHASE: dict[str, Look] = {
    PhaseStatus.PENDING: Look("·", "grey50", "pending"),
    PhaseStatus.QUEUED: Look("◷", "grey62", "queued"),
    PhaseStatus.CLAIMED: Look("◔", "cyan", "claimed"),
    PhaseStatus.RUNNING: Look("▶", "blue", "running"),
    PhaseStatus.SUCCEEDED: Look("✓", "green", "succeeded"),
    PhaseStatus.FAILED: Look("✕", "red", "failed"),
    PhaseStatus.CANCELLED: Look("⊘", "yellow", "cancelled"),
    PhaseStatus.SKIPPED: Look("↷", "grey50", "skipped"),
    PhaseView.RETRYING: Look("↻", "magenta", "retrying"),
    AttemptStatus.EXPIRED: Look("⌛", "red", "expired"),
    AttemptStatus.TIMED_OUT: Look("⏱", "red", "timed out"),
}

_OTHER: dict[str, Look] = {
    "stale": Look("⚠", "yellow", "stale"), "online": Look("●", "green", "online"),
    "ok": Look("✓", "green", "ok"), "error": Look("✕", "red", "error"), "untested": Look("?", "grey50", "untested"),
    "stopped": Look("■", "grey50", "stopped"), "late": Look("✕", "red", "late"), "fresh": Look("✓", "green", "fresh"),
    "aging": Look("◔", "yellow", "aging"), "warning": Look("⚠", "yellow", "warning"),
    "passed": Look("✓", "green", "passed"),
}

STATUS_LOOKS: dict[str, Look] = {str(k): v for k, v in {**_RUN_AND_PHASE, **_OTHER}.items()}
DOMAIN_STATUSES = frozenset(str(s) for s in (*RunStatus, *PhaseStatus, *AttemptStatus, *PhaseView))


def look(status: str | None) -> Look:
    """The look of a status; an unknown one gets a neutral dot and its own name as the word."""
    key = status or PhaseStatus.PENDING.value
    return STATUS_LOOKS.get(key) or Look("•", "white", key)


ALERT_LOOKS: dict[str, Look] = {
    **{f"sev-{s.value}": Look(icon, colour, s.value) for s, icon, colour in (
        (Severity.CRITICAL, "‼", "bold red"), (Severity.ERROR, "✕", "red"), (Severity.WARNING, "⚠", "yellow"),
        (Severity.INFO, "\u2139", "cyan"))},
    **{f"al-{s.value}": Look(icon, colour, s.value) for s, icon, colour in (
        (AlertStatus.OPEN, "●", "red"), (AlertStatus.ACKNOWLEDGED, "◐", "yellow"),
        (AlertStatus.RESOLVED, "✓", "green"))},
    **{f"nt-{s.value}": Look(icon, colour, s.value) for s, icon, colour in (
        (NotificationStatus.PENDING, "◷", "grey62"), (NotificationStatus.SENDING, "▶", "blue"),
        (NotificationStatus.SENT, "✓", "green"), (NotificationStatus.FAILED, "✕", "red"))},
}


def alert_look(kind: str, value: str | None) -> Look | None:
    """The look of an alert severity (``kind`` "sev"), alert state ("al") or notification state ("nt");
    None for a value that has none."""
    return ALERT_LOOKS.get(f"{kind}-{value}")
