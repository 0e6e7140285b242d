"""How statuses and durations read in a terminal (one colour and one icon per status, with text)."""

from __future__ import annotations

from datetime import datetime

STYLE = {
    "queued": ("◷", "grey62"), "pending": ("◌", "grey50"), "claimed": ("◔", "cyan"), "running": ("▶", "blue"),
    "succeeded": ("✔", "green"), "failed": ("✖", "red"), "cancelled": ("⊘", "yellow"),
    "skipped": ("↷", "grey50"),
}


def status_text(status: str) -> str:
    icon, colour = STYLE.get(status, ("?", "white"))
    return f"[{colour}]{icon} {status}[/]"


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
