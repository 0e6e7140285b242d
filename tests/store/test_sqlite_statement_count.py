"""The SQLite hot path is set-based too: one read and one write per table for a claim, a complete
(+ the chain hand-off or the next claims) and a batch complete, in the one ``BEGIN IMMEDIATE``
transaction (store/queue.py, ``_claim_set_sqlite`` / ``_complete_set_sqlite``).

Statement counts (cursor executions, ``BEGIN IMMEDIATE`` included; an ``executemany`` is one) are
deterministic, so they are asserted as budgets, not timed. The same scenario on SQLite and on
PostgreSQL (one statement per call there) leaves the same trails (sequence numbers, types, messages,
payloads), the same attempts and the same phases.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import event, select

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import protocol, runs
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from lakehouse.store.tables import phase_attempts, phases
from tests.conftest import BACKENDS, _truncate_pg

EXECUTOR = Principal(name="robot", role="executor")
T = TypeVar("T")

# the most statements each call may take on SQLite, BEGIN IMMEDIATE included (before the set-based
# path: 13 / 4 / 16 / 10 / 12 / 356 / 859 / 503 — docs/benchmarks.md); a finished run's alert rules
# cost one query per batch (services/alert_fire.py)
BUDGET = {
    "claim": 8,
    "claim_empty": 4,
    "complete_chain_handoff": 7,
    "complete_queue_next": 7,
    "complete_run_succeeds": 8,
    "claim_50": 8,
    "complete_many_50_handoff_50": 7,
    "complete_many_50_runs_succeed": 8,
}


def req(n: int) -> RunRequest:
    return RunRequest(spec_slug="s", git_sha="g", phases=[PhaseSpec(name=f"p{i}", type="noop") for i in range(n)])


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=7)  # every call sees a later instant: durations are not 0
        return self.now


class Counter:
    def __init__(self, ctx: Context) -> None:
        self.statements: list[str] = []
        event.listen(ctx.db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    def count(self, fn: Callable[[], T]) -> tuple[int, T]:
        self.statements.clear()
        out = fn()
        return len(self.statements), out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_calls_stay_within_their_statement_budgets(ctx: Context) -> None:
    counter = Counter(ctx)
    want = {"executor_id": "w", "capabilities": ["noop"], "max_phases": 1}
    warm = runs.create_run(ctx, req(1), SYSTEM)[0]["run_id"]  # the executor is registered
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    protocol.complete(ctx, EXECUTOR, warm, c["lease_token"], {})
    seen: dict[str, int] = {}

    seen["claim_empty"], none = counter.count(lambda: protocol.claim(ctx, EXECUTOR, "w", ["noop"]))
    assert none == []
    run = runs.create_run(ctx, req(3), SYSTEM)[0]["run_id"]
    seen["claim"], claimed = counter.count(lambda: protocol.claim(ctx, EXECUTOR, "w", ["noop"]))
    [c] = claimed
    seen["complete_chain_handoff"], out = counter.count(
        lambda: protocol.complete(ctx, EXECUTOR, run, c["lease_token"], {}, claim_next=want))
    [c] = out["next"]
    assert c["phase"] == "p1"
    seen["complete_queue_next"], _ = counter.count(lambda: protocol.complete(ctx, EXECUTOR, run, c["lease_token"], {}))
    [c] = protocol.claim(ctx, EXECUTOR, "w", ["noop"])
    seen["complete_run_succeeds"], out = counter.count(
        lambda: protocol.complete(ctx, EXECUTOR, run, c["lease_token"], {}))
    assert out["run_status"] == "succeeded"

    for _ in range(100):
        runs.create_run(ctx, req(2), SYSTEM)
    seen["claim_50"], claims = counter.count(lambda: protocol.claim(ctx, EXECUTOR, "w", ["noop"], max_phases=50))
    assert len(claims) == 50
    items = [{"run_id": c["run_id"], "lease_token": c["lease_token"], "output_manifest": {}} for c in claims]
    seen["complete_many_50_handoff_50"], out = counter.count(
        lambda: protocol.complete_many(ctx, EXECUTOR, items, {**want, "max_phases": 50}))
    assert all("error" not in r for r in out["results"]) and {c["phase"] for c in out["next"]} == {"p1"}
    assert len(out["next"]) == 50
    items = [{"run_id": c["run_id"], "lease_token": c["lease_token"], "output_manifest": {}} for c in out["next"]]
    seen["complete_many_50_runs_succeed"], out = counter.count(lambda: protocol.complete_many(ctx, EXECUTOR, items))
    assert all(r["run_status"] == "succeeded" for r in out["results"])

    over = {k: (n, BUDGET[k]) for k, n in seen.items() if n > BUDGET[k]}
    assert over == {}, f"statements over budget (seen, budget): {over}"


# --- the same behaviour on both databases ---------------------------------------------------------

def scenario(ctx: Context) -> dict[str, Any]:
    """Chains with hand-offs, a queued next phase, client events (one a duplicate), a lost lease in a
    batch, a batch complete with next claims: returns everything the queue wrote, normalised."""
    ctx.clock = Clock()
    ids: list[str] = []

    def new(n: int) -> str:
        ids.append(runs.create_run(ctx, req(n), SYSTEM)[0]["run_id"])
        return ids[-1]

    def ev(event_id: str) -> dict[str, Any]:
        return {"event_id": event_id, "type": "PHASE_LOG", "ts": datetime(2026, 12, 3, 8, tzinfo=UTC),
                "level": "info", "message": event_id, "payload": {"k": event_id}}

    want = {"executor_id": "w1", "capabilities": ["noop"], "max_phases": 1}
    a = new(3)
    [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"])
    [c] = protocol.complete(ctx, EXECUTOR, a, c["lease_token"], {"n": 0}, [ev("e1"), ev("e1"), ev("e2")],
                            claim_next=want)["next"]
    protocol.post_events(ctx, EXECUTOR, a, [ev("e3")], c["lease_token"])
    [c] = protocol.complete(ctx, EXECUTOR, a, c["lease_token"], {"n": 1}, [ev("e3"), ev("e4")],
                            claim_next=want)["next"]
    assert c["previous_outputs"] == {"p0": {"n": 0}, "p1": {"n": 1}}
    protocol.complete(ctx, EXECUTOR, a, c["lease_token"], {"outputs": {"t2": {}, "t1": {}}})
    b = new(2)
    [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"], start=False)
    protocol.heartbeat(ctx, EXECUTOR, b, c["lease_token"])
    protocol.complete(ctx, EXECUTOR, b, c["lease_token"], {})  # p1 queued for anyone
    [c] = protocol.claim(ctx, EXECUTOR, "w2", ["noop"])
    protocol.complete(ctx, EXECUTOR, b, c["lease_token"], {}, claim_next={**want, "executor_id": "w2"})
    batch = [new(2) for _ in range(4)]
    claims = protocol.claim(ctx, EXECUTOR, "w3", ["noop"], max_phases=3)
    items = [{"run_id": c["run_id"], "lease_token": c["lease_token"], "output_manifest": {"i": i},
              "events": [ev(f"b{i}")]} for i, c in enumerate(claims)]
    items[1]["lease_token"] = "stale"
    out = protocol.complete_many(ctx, EXECUTOR, items, {"executor_id": "w3", "capabilities": ["noop"],
                                                        "max_phases": 4})
    assert [("error" in r) for r in out["results"]] == [False, True, False]
    items = [{"run_id": c["run_id"], "lease_token": c["lease_token"], "output_manifest": {}} for c in out["next"]]
    protocol.complete_many(ctx, EXECUTOR, items)
    assert len(batch) == 4

    def norm(value: Any) -> Any:
        text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        for n, run_id in enumerate(ids):
            text = text.replace(run_id, f"run{n}")
        return orjson.loads(text)

    trails = {f"run{n}": [{k: e[k] for k in ("seq", "type", "phase", "ts", "level", "message", "payload")}
                          | ({"event_id": e["event_id"]} if e["type"] == "PHASE_LOG" else {})
                          for e in runs.read_events(ctx, run_id, SYSTEM)] for n, run_id in enumerate(ids)}
    with ctx.db.read() as conn:
        rows = conn.execute(select(phases.c.run_id, phases.c.name, phases.c.status, phases.c.attempt,
                                   phases.c.executor_id, phases.c.claimed_at, phases.c.started_at,
                                   phases.c.finished_at, phases.c.available_at, phases.c.output_manifest,
                                   phases.c.lease_token.is_not(None).label("leased"))
                            .order_by(phases.c.run_id, phases.c.idx)).mappings().all()
        tries = conn.execute(select(phases.c.run_id, phases.c.name, phase_attempts.c.attempt,
                                    phase_attempts.c.executor_id, phase_attempts.c.status,
                                    phase_attempts.c.claimed_at, phase_attempts.c.finished_at,
                                    phase_attempts.c.error)
                             .join(phases, phases.c.id == phase_attempts.c.phase_id)
                             .order_by(phases.c.run_id, phases.c.idx, phase_attempts.c.attempt)).mappings().all()
    runs_rows = [runs.get_run(ctx, run_id, SYSTEM) for run_id in ids]
    normalised: dict[str, Any] = norm({
        "trails": trails,
        "phases": sorted(map(dict, rows), key=lambda r: (ids.index(r["run_id"]), r["name"])),
        "attempts": sorted(map(dict, tries), key=lambda r: (ids.index(r["run_id"]), r["name"], r["attempt"])),
        "runs": [{k: r[k] for k in ("status", "started_at", "finished_at")} for r in runs_rows]})
    return normalised


@contextmanager
def backend(url: str, home: Path) -> Iterator[Context]:
    ctx = open_context(Settings(home=home, database_url=url, lease_ttl_s=30, retry_base_s=0.01, retry_max_s=0.05))
    try:
        yield ctx
    finally:
        ctx.db.dispose()


def test_sqlite_and_postgresql_leave_the_same_trails_attempts_and_phases(
        sqlite_template: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if "postgres" not in BACKENDS:
        pytest.skip("needs PostgreSQL (LAKEHOUSE_TEST_BACKENDS)")
    pg_url: str = request.getfixturevalue("pg_database")
    _truncate_pg(pg_url)
    shutil.copy(sqlite_template, tmp_path / "control.db")
    with backend(f"sqlite:///{tmp_path / 'control.db'}", tmp_path / "lite") as lite, \
            backend(pg_url, tmp_path / "pg") as pg:
        on_sqlite, on_pg = scenario(lite), scenario(pg)
    assert on_sqlite["trails"]["run0"][1]["type"] == "RUN_STARTED"
    for key in ("trails", "attempts", "phases", "runs"):
        assert on_sqlite[key] == on_pg[key], key
    for trail in on_sqlite["trails"].values():
        assert [e["seq"] for e in trail] == list(range(1, len(trail) + 1))
