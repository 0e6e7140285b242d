"""How statuses and durations read in a terminal (one colour and one icon per status, with text)."""

from __future__ import annotations

from datetime import datetime

from lakehouse.domain.status_look import alert_look, look


def status_text(status: str) -> str:
    """The status as the Control Room shows it (domain/status_look.py): icon and word, in its colour."""
    lk = look(status)
    return f"[{lk.colour}]{lk.icon} {lk.word}[/]"


def alert_text(kind: str, value: str) -> str:
    """An alert's severity ("sev"), state ("al") or notification state ("nt") as the Alerts page shows it."""
    lk = alert_look(kind, value)
    return f"[{lk.colour}]{lk.icon} {lk.word}[/]" if lk else value


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    s = (end - start).total_seconds()
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} m {sec} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} m"
