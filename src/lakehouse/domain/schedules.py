"""Cron schedules in a time zone, and which ticks a scheduler pass turns into runs. Pure: times in, times out.

Cron expressions are evaluated by ``cronsim`` in the schedule's time zone, with the daylight-saving
rules of Debian's cron: a time that does not exist (spring forward) fires once at the first valid
minute after the gap, a daily time that exists twice (fall back) fires once, and expressions that
fire every hour or more often fire on both passes of the repeated hour. Every tick is then handled
in UTC: its instant is the run's logical date and part of its idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

CatchUp = Literal["none", "latest", "all"]
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def check_cron(expr: str) -> str:
    expr = " ".join(str(expr).split())
    if len(expr.split(" ")) != 5:
        raise ValueError("cron is a 5-field expression (minute hour day month weekday), e.g. '0 2 * * *'")
    try:
        CronSim(expr, _EPOCH)
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
    return expr


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None
    return name


def localize(d: datetime | date, tz: str) -> datetime:
    """A UTC instant from a datetime (naive: in ``tz``) or a date (its midnight in ``tz``)."""
    if not isinstance(d, datetime):
        d = datetime.combine(d, time())
    if d.tzinfo is None:
        d = d.replace(tzinfo=ZoneInfo(tz))
    return d.astimezone(UTC)


def fires(cron: str, tz: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after the UTC instant ``after``, in UTC, ascending."""
    start = after.astimezone(ZoneInfo(tz))
    prev = after
    for local in CronSim(cron, start):
        at = local.astimezone(UTC)
        if at <= prev:  # cronsim may hand the repeated hour's first pass again after a fold
            continue
        prev = at
        yield at


def fires_between(cron: str, tz: str, after: datetime, until: datetime, limit: int = 100_000) -> list[datetime]:
    """Fire times in (after, until], at most ``limit`` (the latest ones are dropped)."""
    out: list[datetime] = []
    for at in fires(cron, tz, after):
        if at > until or len(out) >= limit:
            break
        out.append(at)
    return out


def next_fires(cron: str, tz: str, after: datetime, n: int = 5, end: datetime | None = None) -> list[datetime]:
    out: list[datetime] = []
    for at in fires(cron, tz, after):
        if len(out) >= n or (end is not None and at > end):
            break
        out.append(at)
    return out


def due_ticks(cron: str, tz: str, *, last: datetime, now: datetime, policy: CatchUp, max_catchup: int,
              grace: timedelta, start: datetime | None = None, end: datetime | None = None) -> list[datetime]:
    """The ticks one scheduler pass runs, given the last tick already handled (``last``).

    Every fire time in (last, now] is due; the catch-up policy picks which of them become runs:
    ``none`` only the latest and only when it is at most ``grace`` old (a scheduler that was down
    skips what it missed), ``latest`` the latest however late, ``all`` every missed tick, the most
    recent ``max_catchup`` of them. Ticks before ``start`` or after ``end`` never run.
    """
    lower = max(last, start - timedelta(microseconds=1)) if start else last
    upper = min(now, end) if end else now
    if upper <= lower:
        return []
    due = _tail(fires(cron, tz, lower), upper, max_catchup if policy == "all" else 1)
    if policy == "none":
        return [t for t in due if now - t <= grace]
    return due


def _tail(it: Iterator[datetime], until: datetime, keep: int) -> list[datetime]:
    out: list[datetime] = []
    for at in it:
        if at > until:
            break
        out.append(at)
        if len(out) > keep:
            del out[0]
    return out


def next_after(cron: str, tz: str, after: datetime, start: datetime | None, end: datetime | None
               ) -> datetime | None:
    """The next tick a scheduler must look at: the first fire after ``after`` (and not before
    ``start``), None when the schedule has ended."""
    lower = max(after, start - timedelta(microseconds=1)) if start else after
    for at in fires(cron, tz, lower):
        return None if end is not None and at > end else at
    return None  # pragma: no cover - a valid cron always fires again


def logical_dates(start: date, end: date, cron: str | None, tz: str, limit: int) -> list[datetime]:
    """The logical dates of a backfill from ``start`` to ``end`` (inclusive days in ``tz``): the
    schedule's fire times in that range, or one per day at midnight for a job without a schedule.
    More than ``limit`` raises ValueError."""
    if end < start:
        raise ValueError("the range ends before it starts")
    lo = localize(start, tz)
    hi = localize(end + timedelta(days=1), tz) - timedelta(microseconds=1)
    if cron:
        out = fires_between(cron, tz, lo - timedelta(microseconds=1), hi, limit + 1)
    else:
        days = (end - start).days + 1
        if days > limit:
            raise ValueError(f"a backfill makes at most {limit} runs; this range has {days}")
        out = [localize(start + timedelta(days=i), tz) for i in range(days)]
    if len(out) > limit:
        raise ValueError(f"a backfill makes at most {limit} runs; this range has more")
    return out
