"""Seed → ingest → silver → gold on the embedded default (SQLite) and on PostgreSQL (Odoo source and
metadata both on the real server); gold equals figures computed independently from the source."""

from __future__ import annotations

import collections
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lakehouse.connectors.odoo_mutate import mutate
from lakehouse.connectors.odoo_seed import seed
from lakehouse.domain.principal import SYSTEM
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.services import pipelines, runs
from lakehouse.services.context import Context
from tests.conftest import PG_ADMIN
from tests.e2e.driver import drive

PIPELINES_DIR = Path(__file__).parents[2] / "pipelines"
AS_OF = "2025-12-31"
CENT = Decimal("0.01")


@pytest.fixture
def source_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """An Odoo-shaped source next to the metadata database: SQLite file, or a PostgreSQL database."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'odoo.db'}"
        seed(url, 2)
        yield url
        return
    name = f"odoo_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    seed(url, 2)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def lake_ctx(ctx: Context, source_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Context]:
    """Workers read their settings from the environment: point it at this test's control plane."""
    from lakehouse.store.migrations import upgrade

    for key, value in {"LAKEHOUSE_HOME": str(ctx.settings.home), "LAKEHOUSE_DATABASE_URL": ctx.settings.database_url,
                       "LAKEHOUSE_WAREHOUSE": ctx.settings.warehouse, "LAKEHOUSE_ODOO_URL": source_url,
                       "LAKEHOUSE_SQLITE_SOURCE_DIRS": f'["{tmp_path}"]'}.items():
        monkeypatch.setenv(key, value)
    specs = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR, specs)
    ctx.settings.pipelines_dir = specs
    upgrade(ctx.settings.database_url)
    yield ctx
    close_catalogs()


def run_pipeline(ctx: Context, name: str, **params: Any) -> dict[str, Any]:
    started, _ = pipelines.start_run(ctx, SYSTEM, name, "dev", params or None)
    return drive(ctx, started["run_id"])


def medallion(ctx: Context) -> list[dict[str, Any]]:
    return [run_pipeline(ctx, "odoo_ingest_bronze"), run_pipeline(ctx, "bronze_to_silver"),
            run_pipeline(ctx, "silver_to_gold", as_of=AS_OF)]


def gold(ctx: Context, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = lake_tables.read_table(catalog_for(ctx.settings), "gold", "dev", name).to_pylist()
    return rows


# --- independent figures straight from the source ---------------------------------------------

def source_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def _month(value: Any) -> date:
    d = date.fromisoformat(value[:10]) if isinstance(value, str) else (value.date() if isinstance(value, datetime)
                                                                          else value)
    return d.replace(day=1)


def expected_trial_balance(url: str) -> dict[tuple[int, int, date], tuple[Decimal, Decimal, Decimal]]:
    out: dict[tuple[int, int, date], list[Decimal]] = collections.defaultdict(lambda: [Decimal(0)] * 3)
    for company, account, day, debit, credit, balance in source_rows(
            url, "SELECT company_id, account_id, date, debit, credit, balance FROM account_move_line "
                 "WHERE parent_state = 'posted'"):
        acc = out[(company, account, _month(day))]
        for i, v in enumerate((debit, credit, balance)):
            acc[i] += Decimal(str(v))
    return {k: tuple(x.quantize(CENT) for x in v) for k, v in out.items()}  # type: ignore[misc]


def expected_revenue(url: str) -> dict[tuple[int, date, Any, Any], Decimal]:
    out: dict[tuple[int, date, Any, Any], Decimal] = collections.defaultdict(Decimal)
    for company, day, partner, product, balance in source_rows(
            url, "SELECT l.company_id, l.date, l.partner_id, l.product_id, l.balance FROM account_move_line l "
                 "JOIN account_move m ON m.id = l.move_id JOIN account_account a ON a.id = l.account_id "
                 "WHERE l.parent_state = 'posted' AND m.move_type IN ('out_invoice', 'out_refund') "
                 "AND a.account_type IN ('income', 'income_other')"):
        out[(company, _month(day), partner, product)] -= Decimal(str(balance))
    return {k: v.quantize(CENT) for k, v in out.items()}


def actual_trial_balance(ctx: Context) -> dict[tuple[int, int, date], tuple[Decimal, Decimal, Decimal]]:
    return {(r["company_id"], r["account_id"], r["month"]): (r["debit"], r["credit"], r["balance"])
            for r in gold(ctx, "gl_trial_balance")}


def actual_revenue(ctx: Context) -> dict[tuple[int, date, Any, Any], Decimal]:
    return {(r["company_id"], r["month"], r["partner_id"], r["product_id"]): r["amount"]
            for r in gold(ctx, "revenue_monthly")}


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_medallion_gold_equals_the_source(lake_ctx: Context, source_url: str) -> None:
    results = medallion(lake_ctx)
    assert [r["status"] for r in results] == ["succeeded"] * 3, [r["error"] for r in results]
    tb = actual_trial_balance(lake_ctx)
    assert tb == expected_trial_balance(source_url)
    assert len(tb) > 10
    assert actual_revenue(lake_ctx) == expected_revenue(source_url)
    buckets = {r["bucket"] for r in gold(lake_ctx, "ar_aging")}
    assert buckets <= {"current", "1-30", "31-60", "61-90", "90+"} and buckets
    orders = sum(r["orders"] for r in gold(lake_ctx, "sales_pipeline"))
    assert orders == source_rows(source_url, "SELECT count(*) FROM sale_order")[0][0]
    # every run records its spec and code version, and its outputs carry content hashes
    publish = results[2]["phases"][-1]["output_manifest"]
    assert set(publish["outputs"]) == {"gold.gl_trial_balance", "gold.revenue_monthly", "gold.ar_aging",
                                       "gold.sales_pipeline"}
    assert all(len(o["content_hash"]) == 64 for o in publish["outputs"].values())
    assert results[0]["git_sha"] and results[0]["spec_slug"] == "odoo_ingest_bronze"


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_incremental_reflects_exactly_the_source_changes(lake_ctx: Context, source_url: str) -> None:
    assert all(r["status"] == "succeeded" for r in medallion(lake_ctx))
    catalog = catalog_for(lake_ctx.settings)
    before = {r["move_id"]: r for r in lake_tables.read_table(catalog, "silver", "dev", "journal_entries").to_pylist()}
    changes = mutate(source_url, 5, datetime(2026, 2, 1, 12, 0, tzinfo=UTC))
    ingest = run_pipeline(lake_ctx, "odoo_ingest_bronze")
    assert ingest["status"] == "succeeded", ingest["error"]
    publish = next(p for p in ingest["phases"] if p["type"] == "publish")
    staged = {t: o["rows"] for t, o in publish["output_manifest"]["outputs"].items()}
    moves_changed = len(changes["updated"].get("account_move", [])) + len(changes["inserted"].get("account_move", [])) \
        + len(changes["deleted"].get("account_move", []))
    assert staged["bronze.account_move"] == moves_changed  # only the changed rows were loaded
    assert run_pipeline(lake_ctx, "bronze_to_silver")["status"] == "succeeded"
    assert run_pipeline(lake_ctx, "silver_to_gold", as_of=AS_OF)["status"] == "succeeded"
    after = {r["move_id"]: r for r in lake_tables.read_table(catalog, "silver", "dev", "journal_entries").to_pylist()}
    assert set(after) == (set(before) - set(changes["deleted"]["account_move"])) | set(
        changes["inserted"]["account_move"])
    touched = set(changes["updated"]["account_move"]) | set(changes["inserted"]["account_move"])
    for move_id in set(after) - touched:
        assert after[move_id] == before[move_id]
    for move_id in changes["updated"]["account_move"]:
        assert after[move_id]["state"] == "posted" and before[move_id]["state"] == "draft"
    assert actual_trial_balance(lake_ctx) == expected_trial_balance(source_url)
    assert actual_revenue(lake_ctx) == expected_revenue(source_url)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rebuild_gives_identical_hashes(lake_ctx: Context, source_url: str, tmp_path: Path) -> None:
    first = medallion(lake_ctx)
    hashes = {t: o["content_hash"] for r in first for t, o in r["phases"][-1]["output_manifest"]["outputs"].items()
              if not t.startswith("bronze.")}
    # a second, independent lakehouse over the same source and specs
    from lakehouse.settings import Settings
    from lakehouse.store.migrations import upgrade

    other = Settings(home=tmp_path / "again", database_url=f"sqlite:///{tmp_path / 'again.db'}",
                     pipelines_dir=lake_ctx.settings.pipelines_dir, retry_base_s=0.01, retry_max_s=0.05)
    upgrade(other.database_url)
    from lakehouse.services.context import open_context

    ctx2 = open_context(other)
    import os

    os.environ.update({"LAKEHOUSE_HOME": str(other.home), "LAKEHOUSE_DATABASE_URL": other.database_url,
                       "LAKEHOUSE_WAREHOUSE": other.warehouse})
    second = medallion(ctx2)
    hashes2 = {t: o["content_hash"] for r in second for t, o in r["phases"][-1]["output_manifest"]["outputs"].items()
               if not t.startswith("bronze.")}
    assert [r["git_sha"] for r in first] == [r["git_sha"] for r in second]
    assert hashes == hashes2 and len(hashes) == 11
    ctx2.db.dispose()


def events_of(ctx: Context, run: dict[str, Any]) -> list[dict[str, Any]]:
    return runs.read_events(ctx, run["run_id"], SYSTEM)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_failures_fail_the_right_phase_and_leave_gold_untouched(lake_ctx: Context, source_url: str) -> None:
    assert all(r["status"] == "succeeded" for r in medallion(lake_ctx))
    catalog = catalog_for(lake_ctx.settings)
    gold_snapshot = lake_tables.load(catalog, "gold", "dev", "gl_trial_balance").metadata.current_snapshot_id
    specs = lake_ctx.settings.pipelines_dir

    # a SQL syntax error in a gold transform
    path = specs / "sql/gold/gl_trial_balance.sql"
    good = path.read_text()
    path.write_text(good.replace("GROUP BY ALL", "GROUP BY ALL ALL"))
    run = run_pipeline(lake_ctx, "silver_to_gold", as_of=AS_OF)
    assert run["status"] == "failed" and run["phases"][0]["status"] == "failed"
    assert "gl_trial_balance" in run["phases"][0]["error"] and "syntax" in run["phases"][0]["error"].lower()
    assert run["phases"][0]["attempt"] == 1  # not retried: it cannot get better

    # an unknown column
    path.write_text(good.replace("sum(debit)", "sum(no_such_column)"))
    run = run_pipeline(lake_ctx, "silver_to_gold", as_of=AS_OF)
    assert run["status"] == "failed" and "no_such_column" in run["phases"][0]["error"]
    path.write_text(good)

    # a blocking DQ failure stops the publish
    spec = specs / "silver_to_gold.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("type: row_count, min: 1}", "type: row_count, min: 100000000}"))
    run = run_pipeline(lake_ctx, "silver_to_gold", as_of=AS_OF)
    assert [p["status"] for p in run["phases"]] == ["succeeded", "failed", "skipped"]
    assert "row_count" in run["phases"][1]["error"]
    dq = [e for e in events_of(lake_ctx, run) if e["type"] == "DQ_RESULT"]
    assert any(not e["payload"]["result"]["passed"] for e in dq)
    spec.write_text(text)
    assert lake_tables.load(catalog, "gold", "dev", "gl_trial_balance").metadata.current_snapshot_id == gold_snapshot

    # an unreachable source: retried with backoff, then a clear failure; bronze untouched
    bronze_snapshot = lake_tables.load(catalog, "bronze", "dev", "account_move").metadata.current_snapshot_id
    import os

    os.environ["LAKEHOUSE_ODOO_URL"] = "postgresql://nobody@127.0.0.1:1/odoo"
    run = run_pipeline(lake_ctx, "odoo_ingest_bronze")
    os.environ["LAKEHOUSE_ODOO_URL"] = source_url
    first = run["phases"][0]
    assert run["status"] == "failed" and first["status"] == "failed" and first["attempt"] == first["max_attempts"]
    assert "unreachable" in first["error"]
    kinds = [e["type"] for e in events_of(lake_ctx, run)]
    assert kinds.count("PHASE_REQUEUED") == first["max_attempts"] - 1
    assert lake_tables.load(catalog, "bronze", "dev", "account_move").metadata.current_snapshot_id == bronze_snapshot

    # an unknown source table
    spec = specs / "odoo_ingest_bronze.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("ops: [sale_order, sale_order_line]", "ops: [sale_order, sale_order_lines]"))
    run = run_pipeline(lake_ctx, "odoo_ingest_bronze")
    failed = [p for p in run["phases"] if p["status"] == "failed"]
    assert run["status"] == "failed" and failed[0]["name"] == "ingest_ops" and "sale_order_lines" in failed[0]["error"]
    spec.write_text(text)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schema_drift_beyond_policy_fails_ingest(lake_ctx: Context, source_url: str) -> None:
    assert run_pipeline(lake_ctx, "odoo_ingest_bronze")["status"] == "succeeded"
    db = source_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:  # an added column is fine under allow_additive …
        conn.execute("ALTER TABLE res_partner ADD COLUMN x_loyalty_tier TEXT")
    run = run_pipeline(lake_ctx, "odoo_ingest_bronze")
    assert run["status"] == "succeeded", run["error"]
    drift = [e for e in events_of(lake_ctx, run) if e["type"] == "SCHEMA_DRIFT"]
    assert drift and drift[0]["payload"]["added"] == ["x_loyalty_tier"]
    outcomes = [e["payload"]["result"] for e in events_of(lake_ctx, run) if e["type"] == "DQ_RESULT"]
    assert any(o["type"] == "schema_drift" and o["table"] == "bronze.res_partner" for o in outcomes)
    with sqlite3.connect(db) as conn:  # … a removed one is not
        conn.execute("ALTER TABLE res_partner DROP COLUMN x_loyalty_tier")
        conn.execute("ALTER TABLE res_partner DROP COLUMN phone")
    run = run_pipeline(lake_ctx, "odoo_ingest_bronze")
    assert run["status"] == "failed"
    failed = next(p for p in run["phases"] if p["status"] == "failed")
    assert failed["name"] == "ingest_masterdata" and "schema drift" in failed["error"] and "phone" in failed["error"]


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_query_phase_records_history_and_reads_gold(lake_ctx: Context, source_url: str) -> None:
    from lakehouse.domain.runs import PhaseSpec, RunRequest
    from lakehouse.services import sql as sql_service

    assert all(r["status"] == "succeeded" for r in medallion(lake_ctx))
    req = RunRequest(spec_slug="revenue_report", git_sha="g", phases=[PhaseSpec(
        name="report", type="query", params={"sql": "SELECT company_id, sum(amount) AS revenue "
                                                     "FROM gold.revenue_monthly GROUP BY 1 ORDER BY 1"})])
    run, _ = runs.create_run(lake_ctx, req, SYSTEM)
    final = drive(lake_ctx, run["run_id"])
    assert final["status"] == "succeeded", final["error"]
    manifest = final["phases"][0]["output_manifest"]
    expected: collections.defaultdict[int, Decimal] = collections.defaultdict(Decimal)
    for (company, *_), amount in expected_revenue(source_url).items():
        expected[company] += amount
    assert manifest["query"]["rows"] == len(expected)
    history = sql_service.search_history(lake_ctx, SYSTEM, q="revenue_monthly")
    assert history and history[0]["run_id"] == run["run_id"] and history[0]["status"] == "succeeded"
    assert [s["table"] for s in manifest["query"]["snapshot_ids"]] == ["gold.revenue_monthly"]
