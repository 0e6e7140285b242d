"""The ``spark`` phase type on Spark local[2] (slow: each Spark application starts a JVM, 15-60 s here).

* silver_to_gold with its transform phase on Spark publishes the same gold (content hashes) as DuckDB;
* a Spark job that fails after writing one output, and one cancelled while writing, publish nothing:
  the tables stay at their previous snapshots and the Spark application is gone."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.handlers import staging
from lakehouse.services import artifacts
from lakehouse.worker.context import PhaseCancelled, PhaseContext
from lakehouse.worker.inmemory import InMemoryClient
from tests.e2e.driver import EXECUTOR
from tests.engines.conftest import AS_OF, Lake

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow


def _staged_files(lake: Lake) -> list[Path]:
    root = Path(staging._fs(lake.ctx.settings)[1]) / "_staging"
    return [p for p in root.rglob("*.parquet")] if root.exists() else []


def test_silver_to_gold_on_spark_gives_the_duckdb_gold(lake: Lake) -> None:
    run = lake.pipeline("silver_to_gold", {"type": "spark", "params": {"master": "local[2]",
                                                                        "driver_memory": "768m"}}, as_of=AS_OF)
    assert run["status"] == "succeeded", run["error"]
    phase = next(p for p in run["phases"] if p["name"] == "transform")
    assert phase["type"] == "spark"
    staged = phase["output_manifest"]["outputs"]
    assert {t: e["content_hash"] for t, e in staged.items()} == lake.reference
    assert all(e["engine"] == "spark" for e in staged.values())
    assert phase["output_manifest"]["reads"].keys() == {"silver.journal_lines", "silver.accounts",
                                                        "silver.sales_orders"}
    for table, digest in lake.reference.items():  # published through validate → publish, same rows
        assert lake.table_hash(table) == digest
    names = {a["name"] for a in artifacts.list_for_run(lake.ctx, run["run_id"], SYSTEM)}
    assert "spark-driver.log" in names
    assert any(n.startswith("spark-events-") for n in names), names
    assert not _staged_files(lake)


def test_a_failing_spark_job_publishes_nothing(lake: Lake) -> None:
    before = {t: lake.snapshot(t) for t in lake.reference}
    transforms = [
        {"name": "ok", "sql": "SELECT company_id, count(*) AS n FROM silver.journal_lines GROUP BY ALL",
         "output": "gold.gl_trial_balance"},
        {"name": "boom", "sql": "SELECT raise_error('boom in the second transform') AS x",
         "output": "gold.revenue_monthly"},
    ]
    run = lake.run([{"name": "spark", "type": "spark", "params": {"transforms": transforms}, "max_attempts": 1},
                    {"name": "publish", "type": "publish", "params": {}}], {})
    assert run["status"] == "failed"
    assert "boom in the second transform" in run["error"]
    assert {t: lake.snapshot(t) for t in lake.reference} == before
    assert not _staged_files(lake)


def _spark_processes(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(int(pid))
    return found


def test_a_spark_job_cancelled_mid_write_publishes_nothing_and_stops(lake: Lake, tmp_path: Path) -> None:
    before = {t: lake.snapshot(t) for t in lake.reference}
    slow = "SELECT sum(hash(a.id, b.id)) AS h FROM range(200000) a CROSS JOIN range(200000) b"
    params = {"transforms": [
        {"name": "first", "sql": "SELECT company_id, count(*) AS n FROM silver.journal_lines GROUP BY ALL",
         "output": "gold.gl_trial_balance"},
        {"name": "endless", "sql": slow, "output": "gold.revenue_monthly"}]}
    ctx = PhaseContext(run_id="cancel-test-run", phase="spark", phase_type="spark", attempt=1, params=params,
                       input_manifest={}, previous_outputs={}, environment="dev", spec_slug="t", git_sha="t",
                       workdir_path=tmp_path, client=InMemoryClient(lake.ctx, EXECUTOR))
    first_written = tmp_path / "spark-out" / "gold.gl_trial_balance" / "_SUCCESS"

    def cancel_when_midway() -> None:
        while not first_written.exists() and not done.is_set():
            done.wait(0.2)
        ctx.cancel_reason = "run cancelled"
        ctx.cancelled.set()

    from lakehouse.handlers.spark import run_spark

    done = threading.Event()
    watcher = threading.Thread(target=cancel_when_midway, daemon=True)
    watcher.start()
    try:
        with pytest.raises(PhaseCancelled, match="run cancelled"):
            run_spark(ctx)
    finally:
        done.set()
        watcher.join()
    assert first_written.exists()  # it was stopped mid-job: one output written, the next one running
    assert not _spark_processes(str(tmp_path / "spark-tmp"))  # the driver and its JVM are gone
    assert {t: lake.snapshot(t) for t in lake.reference} == before
    assert not _staged_files(lake)
