"""sql jobs with a target: the publish phase honours the write mode their manifest records
(overwrite, append, merge on the job's keys computed in DuckDB and published with one overwrite)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.domain.principal import Principal
from lakehouse.handlers import pipeline, staging
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import close_catalogs
from lakehouse.services import job_runs, jobs
from lakehouse.services.context import Context
from lakehouse.worker.context import PhaseContext, PhaseError
from tests.clock_support import Clock
from tests.lake.support import fresh_catalog


@pytest.fixture
def catalog(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield fresh_catalog(ctx)
    close_catalogs()


def _publish(ctx: Context, run_id: str, rows: pa.Table, mode: str | None, keys: list[str] | None = None) -> Any:
    path = staging.write(ctx.settings, run_id, "gold.orders", rows)
    entry = staging.manifest_entry(path, rows, "h" * 64)
    manifest: dict[str, Any] = {"write": {"gold.orders": {"mode": mode, "keys": keys or []}}} if mode else {}
    pctx = PhaseContext(run_id=run_id, phase="publish", phase_type="publish", attempt=1, params={},
                        input_manifest=manifest, previous_outputs={"transform": {"outputs": {"gold.orders": entry}}},
                        environment="dev", spec_slug="orders", git_sha="g", workspace="default",
                        settings=ctx.settings)
    return pipeline.publish(pctx)


def _content(catalog: Any) -> list[tuple[Any, ...]]:
    t = lake_tables.read_table(catalog, "gold", "dev", "orders")
    return sorted(zip(*(t.column(c).to_pylist() for c in ("id", "amount")), strict=True), key=lambda r: str(r))


def test_merge_append_and_overwrite(ctx: Context, catalog: Any) -> None:
    first = _publish(ctx, "r1", pa.table({"id": [1, 2], "amount": [10, 20]}), "merge", ["id"])
    assert first["outputs"]["gold.orders"]["mode"] == "merge"
    assert _content(catalog) == [(1, 10), (2, 20)]
    _publish(ctx, "r2", pa.table({"id": [2, 3], "amount": [21, 30]}), "merge", ["id"])
    assert _content(catalog) == [(1, 10), (2, 21), (3, 30)]
    _publish(ctx, "r3", pa.table({"id": [4], "amount": [40]}), "append")
    assert _content(catalog) == [(1, 10), (2, 21), (3, 30), (4, 40)]
    _publish(ctx, "r4", pa.table({"id": [9], "amount": [90]}), "overwrite")
    assert _content(catalog) == [(9, 90)]
    _publish(ctx, "r5", pa.table({"id": [8], "amount": [80]}), None)  # no write entry: gold overwrites
    assert _content(catalog) == [(8, 80)]


def test_merge_matches_null_keys_and_refuses_repeated_keys(ctx: Context, catalog: Any) -> None:
    _publish(ctx, "r1", pa.table({"id": pa.array([1, None], pa.int64()), "amount": [1, 2]}), "merge", ["id"])
    _publish(ctx, "r2", pa.table({"id": pa.array([None], pa.int64()), "amount": [3]}), "merge", ["id"])
    assert _content(catalog) == [(1, 1), (None, 3)]
    with pytest.raises(PhaseError, match="not unique"):
        _publish(ctx, "r3", pa.table({"id": [5, 5], "amount": [1, 2]}), "merge", ["id"])
    with pytest.raises(PhaseError, match="not columns"):
        _publish(ctx, "r4", pa.table({"id": [6], "amount": [1]}), "merge", ["order_id"])
    assert _content(catalog) == [(1, 1), (None, 3)]


def test_a_sql_jobs_manifest_records_its_write_mode(ctx: Context, clock: Clock, admin: Principal) -> None:
    jobs.save(ctx, admin, "default", {"name": "orders", "type": "sql", "sql": {
        "query": "SELECT 1 AS id", "target": "gold.orders", "mode": "merge", "keys": ["id"]}})
    run, _ = job_runs.run_job(ctx, admin, "default", "orders")
    assert run["input_manifest"]["write"] == {"gold.orders": {"mode": "merge", "keys": ["id"]}}
    assert [p["type"] for p in run["phases"]] == ["transform", "publish"]
