"""Run scores in the Control Room (the run page's breakdown, the Runs list's Score column and its sort)
and the Overview's p50/p95 duration and queue depth charts, from runs driven through the real queue
with a fake clock (on SQLite and PostgreSQL)."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import protocol, runs, scores
from lakehouse.services.context import Context
from lakehouse.web import queries
from tests.clock_support import Clock
from tests.operations.conftest import EXECUTOR, START, fail_run, start_run, succeed_run
from tests.web.conftest import Browser, BrowserFor

ROW_ID = re.compile(r'<tr>\s*<td>.*?href="/runs/([0-9a-f-]{36})"', re.S)


@pytest.fixture
def clock(ctx: Context) -> Clock:
    c = Clock(START)
    ctx.clock = c
    return c


@pytest.fixture
def admin(clock: Clock, browser_for: BrowserFor) -> Browser:
    """The admin, logged in on the fake clock (the session is as old as the clock says)."""
    return browser_for("admin")


def signal_row(page: str, signal: str) -> list[str]:
    """The cells of one signal's row of the breakdown table, as text."""
    m = re.search(rf'<tr data-signal="{signal}"[^>]*>(.*?)</tr>', page, re.S)
    assert m, f"no {signal} row in the breakdown"
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", m.group(1), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip().replace("\u2212", "-") for c in cells]


def listed_ids(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return ROW_ID.findall(body)


# --- the run page -----------------------------------------------------------------------------------

def test_run_page_shows_the_score_and_its_breakdown(ctx: Context, clock: Clock, admin: Browser) -> None:
    for _ in range(3):
        succeed_run(ctx, clock, took_s=10)
    slow = succeed_run(ctx, clock, took_s=30)  # 3x the median duration and runtime
    failed = fail_run(ctx, clock)
    running = start_run(ctx)

    page = admin.get(f"/runs/{slow}").text
    # duration: 3x the 10 s median loses all 15 of its 15 % share; cost: 3x the median runtime is
    # 2/3 of the way to 4x, so 2/3 of its 5 points; 100 - 15 - 3.33 = 81.7, "fair" (75 to 90)
    assert "81.7 fair" in page
    assert signal_row(page, "duration")[:5] == ["Duration", "30 s", "median 10 s", "15.0 (15.0 %)", "-15.0"]
    assert "3.00x the median" in signal_row(page, "duration")[5]
    assert signal_row(page, "cost")[1:5] == ["30 s", "median 10 s", "5.0 (5.0 %)", "-3.33"]
    assert signal_row(page, "outcome")[1:5] == ["succeeded", "succeeded", "30.0 (30.0 %)", "0"]
    assert signal_row(page, "retries")[1:5] == ["0 extra attempts", "0", "15.0 (15.0 %)", "0"]
    assert signal_row(page, "freshness")[2] == "SLO 15 m 0 s"

    page = admin.get(f"/runs/{failed}").text
    assert "70.0 poor" in page  # the outcome signal takes its whole 30 % share
    assert signal_row(page, "outcome")[1:5] == ["failed", "succeeded", "30.0 (30.0 %)", "-30.0"]

    page = admin.get(f"/runs/{running}").text
    assert "not scored yet" in page and 'data-signal="' not in page


def test_weights_of_the_workspace_show_on_the_run_page(ctx: Context, clock: Clock, admin: Browser) -> None:
    scores.set_weights(ctx, SYSTEM, "default", {"outcome": 90})  # total 160: outcome is 56.25 %
    failed = fail_run(ctx, clock)
    page = admin.get(f"/runs/{failed}").text
    assert signal_row(page, "outcome")[3:5] == ["90.0 (56.2 %)", "-56.25"]
    assert "43.8 poor" in page


# --- the runs list ----------------------------------------------------------------------------------

@pytest.fixture
def scored(ctx: Context, clock: Clock) -> dict[str, Any]:
    """Scored runs of every kind, then a running run and a finished run the pass has not scored."""
    calm = [succeed_run(ctx, clock, took_s=10) for _ in range(4)]
    slow = succeed_run(ctx, clock, took_s=30)
    retried = succeed_run(ctx, clock, took_s=10, extra_attempts=1)
    failed = fail_run(ctx, clock)
    assert scores.score_pending(ctx) == 7
    running = start_run(ctx)
    clock.advance(5)
    late = succeed_run(ctx, clock, took_s=10)
    values = {r["run_id"]: r["score"] for r in scores.list_scores(ctx, SYSTEM)}
    assert values[failed] < values[slow] < values[retried] < 100 and all(values[c] == 100 for c in calm)
    return {"calm": calm, "slow": slow, "retried": retried, "failed": failed, "running": running, "late": late}


def test_sort_by_score_orders_the_rows(scored: dict[str, Any], admin: Browser) -> None:
    tail = [scored["late"], scored["running"]]  # not scored: last, newest first
    worst_first = [scored["failed"], scored["slow"], scored["retried"], *sorted(scored["calm"]), *tail]
    page = admin.get("/runs?sort=score").text
    assert listed_ids(page) == worst_first
    assert 'aria-sort="ascending"' in page and '<input type="hidden" name="sort" value="score">' in page
    assert "70.0 poor" in page and "81.7 fair" in page and "100.0 good" in page and ">pending<" in page

    best_first = [*sorted(scored["calm"], reverse=True), scored["retried"], scored["slow"], scored["failed"], *tail]
    assert listed_ids(admin.get("/runs?sort=-score").text) == best_first
    # a filter keeps the sort: only the succeeded runs, still worst first
    assert listed_ids(admin.get("/runs?sort=score&status=succeeded").text) == [
        scored["slow"], scored["retried"], *sorted(scored["calm"]), scored["late"]]
    # newest first without the sort, each row with its score
    newest = admin.get("/runs").text
    assert listed_ids(newest)[:2] == tail and "?sort=score" in newest
    assert admin.get("/runs?sort=bogus").status_code == 422


@pytest.mark.parametrize("size", [1, 2, 3, 4, 50])
def test_score_pages_chain_through_scored_then_unscored(ctx: Context, scored: dict[str, Any], size: int) -> None:
    """Keyset pages of any size walk the same order: scored runs by (score, id), then the rest."""
    for sort in ("score", "-score"):
        whole, _ = queries.list_runs(ctx, SYSTEM, queries.RunFilter(), limit=100, sort=sort)
        walked: list[str] = []
        cursor: str | None = None
        for _ in range(20):
            rows, cursor = queries.list_runs(ctx, SYSTEM, queries.RunFilter(), before=cursor, limit=size, sort=sort)
            walked += [r["id"] for r in rows]
            if cursor is None:
                break
        assert walked == [r["id"] for r in whole] and len(walked) == 9


def test_the_more_link_keeps_the_sort(ctx: Context, clock: Clock, admin: Browser) -> None:
    for _ in range(51):
        fail_run(ctx, clock)
    scores.score_pending(ctx)
    page = admin.get("/runs?sort=-score&env=dev").text
    more = re.search(r'id="more-row"><td colspan="9"><a href="([^"]+)"', page)
    assert more and len(listed_ids(page)) == 50
    url = html.unescape(more.group(1))
    assert "sort=-score" in url and "env=dev" in url and "before=s%3A70.0" in url
    rest = admin.get(url, headers={"HX-Request": "true"}).text
    assert len(ROW_ID.findall(rest)) == 1


# --- the Overview charts ----------------------------------------------------------------------------

def chart(page: str, name: str) -> dict[str, Any]:
    m = re.search(rf'<script type="application/json" id="{name}-data">(.*?)</script>', page, re.S)
    assert m, name
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def at(series: dict[str, Any], when: datetime) -> int:
    return list(series["x"]).index(int(when.timestamp()))


def test_duration_chart_has_p50_and_p95_per_hour(ctx: Context, clock: Clock, admin: Browser) -> None:
    nine = clock.now  # 2026-12-01 09:00 UTC
    for took in range(3, 31, 3):  # 10 runs in the 09:00 hour: 3 s … 30 s (within the 30 s lease)
        succeed_run(ctx, clock, took_s=took)
    clock.now = nine + timedelta(hours=1, minutes=5)
    succeed_run(ctx, clock, took_s=7)
    fail_run(ctx, clock)  # failed runs are not in the duration chart
    clock.now = nine + timedelta(hours=2, minutes=30)
    page = admin.get("/").text
    d = chart(page, "duration")
    assert len(d["x"]) == 25
    i = at(d, nine)
    # nearest rank: p50 is the 5th of 10 (15 s), p95 the 10th (30 s)
    assert (d["p50"][i], d["p95"][i], d["runs"][i]) == (15, 30, 10)
    assert (d["p50"][i + 1], d["p95"][i + 1], d["runs"][i + 1]) == (7, 7, 1)
    assert d["p50"][i + 2] is None and d["runs"][i - 1] == 0
    assert "11 succeeded runs in 2 hours; highest hourly p95 30 s" in page
    assert 'id="duration-chart" role="img"' in page


def test_queue_depth_chart_counts_phases_waiting(ctx: Context, clock: Clock, admin: Browser) -> None:
    nine = clock.now
    a, b = start_run(ctx), start_run(ctx)  # both queued at 09:00
    clock.now = nine + timedelta(minutes=20)
    protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=a)  # a waited 09:00-09:20
    clock.now = nine + timedelta(minutes=40)
    c = start_run(ctx)  # queued at 09:40
    clock.now = nine + timedelta(minutes=70)
    runs.cancel_run(ctx, c, SYSTEM)  # cancelled while queued at 10:10
    clock.now = nine + timedelta(minutes=75)
    d = start_run(ctx, phases=2)  # two phases: only the first is queued (the second is pending)
    clock.now = nine + timedelta(minutes=90)
    protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=d)  # d waited 10:15-10:30
    clock.now = nine + timedelta(hours=2, minutes=7)  # 11:07
    page = admin.get("/").text
    q = chart(page, "queue")
    assert len(q["x"]) == 98 and q["x"][-1] == int(clock.now.timestamp())
    depth = dict(zip(q["x"], q["depth"], strict=True))

    def when(minutes: int) -> int:
        return int(depth[int((nine + timedelta(minutes=minutes)).timestamp())])

    assert when(-15) == 0
    assert when(0) == 2  # a and b: queued at t when available_at <= t
    assert when(15) == 2
    assert when(30) == 1  # a was claimed at 09:20
    assert when(45) == 2  # b and c
    assert when(60) == 2
    assert when(75) == 2  # c cancelled at 10:10; d queued at 10:15 exactly
    assert when(90) == 1  # d claimed at 10:30 exactly: no longer queued
    assert when(120) == 1 and q["depth"][-1] == 1  # b, to this minute
    assert "Peak 2 queued at" in page and "1 queued now" in page
    assert b  # b never leaves the queue


def test_charts_show_only_the_viewers_workspaces(ctx: Context, clock: Clock, outsider: Browser) -> None:
    start_run(ctx)  # queued in default, which mallory cannot see
    succeed_run(ctx, clock, took_s=10)
    clock.advance(60)
    page = outsider.get("/").text
    assert chart(page, "queue")["depth"][-1] == 0
    assert not any(chart(page, "duration")["runs"])

