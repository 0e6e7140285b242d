"""A lake with bronze and silver built once per module (seeded Odoo source → the reference pipelines on
DuckDB, in-process through tests/e2e/driver.py), and the content hashes of the gold the DuckDB
silver_to_gold publishes from it: the reference the Spark and dbt executors must reproduce."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lakehouse.connectors.odoo_seed import seed
from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.lake.hashing import content_hash
from lakehouse.services import pipelines, runs
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from lakehouse.store.migrations import upgrade
from tests.e2e.driver import drive

ROOT = Path(__file__).parents[2]
AS_OF = "2025-12-31"
GOLD = ("gl_trial_balance", "revenue_monthly", "ar_aging", "sales_pipeline")


@dataclass
class Lake:
    ctx: Context
    reference: dict[str, str]  # gold table → content hash of the DuckDB pipeline's result

    def catalog(self) -> Any:
        return catalog_for(self.ctx.settings)

    def table_hash(self, table: str) -> str:
        layer, _, name = table.partition(".")
        return content_hash(lake_tables.read_table(self.catalog(), layer, "dev", name))

    def snapshot(self, table: str) -> int | None:
        layer, _, name = table.partition(".")
        snapshot_id: int | None = lake_tables.load(self.catalog(), layer, "dev", name).metadata.current_snapshot_id
        return snapshot_id

    def run(self, phases: list[dict[str, Any]], manifest: dict[str, Any], slug: str = "engine-test"
            ) -> dict[str, Any]:
        req = RunRequest(spec_slug=slug, git_sha="test", phases=[PhaseSpec(**p) for p in phases],
                         input_manifest=manifest, environment="dev")
        started, _ = runs.create_run(self.ctx, req, SYSTEM)
        return drive(self.ctx, started["run_id"])

    def pipeline(self, name: str, engine_phase: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        """Run a reference pipeline; ``engine_phase`` replaces its transform phase (e.g. type spark)."""
        req = pipelines.run_request(pipelines.find(name, self.ctx.settings.pipelines_dir), "dev", params or None)
        if engine_phase is not None:
            req.phases = [PhaseSpec(**{**p.model_dump(exclude_none=True), **engine_phase})
                          if p.name == "transform" else p for p in req.phases]
        started, _ = runs.create_run(self.ctx, req, SYSTEM)
        return drive(self.ctx, started["run_id"])


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    tmp = tmp_path_factory.mktemp("lake")
    source = f"sqlite:///{tmp / 'odoo.db'}"
    seed(source, 1)
    db = f"sqlite:///{tmp / 'control.db'}"
    upgrade(db)
    settings = Settings(home=tmp / "home", database_url=db, lease_ttl_s=1800, retry_base_s=0.01, retry_max_s=0.05)
    shutil.copytree(ROOT / "pipelines", tmp / "pipelines")
    settings.pipelines_dir = tmp / "pipelines"
    with pytest.MonkeyPatch.context() as mp:  # workers (and the engines' child processes) read the environment
        for key, value in {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_DATABASE_URL": db,
                           "LAKEHOUSE_WAREHOUSE": settings.warehouse, "LAKEHOUSE_ODOO_URL": source,
                           "LAKEHOUSE_SQLITE_SOURCE_DIRS": f'["{tmp}"]'}.items():
            mp.setenv(key, value)
        ctx = open_context(settings)
        lake = Lake(ctx, {})
        for name in ("odoo_ingest_bronze", "bronze_to_silver"):
            assert lake.pipeline(name)["status"] == "succeeded", name
        gold = lake.pipeline("silver_to_gold", as_of=AS_OF)
        assert gold["status"] == "succeeded", gold.get("error")
        lake.reference = {f"gold.{t}": lake.table_hash(f"gold.{t}") for t in GOLD}
        try:
            yield lake
        finally:
            ctx.db.dispose()
            close_catalogs()
