"""The dataset registry: tables appear when a pipeline publishes, can be registered by hand by their
metadata file, are searched by name, tag and owner, and carry freshness and quality status. Runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.services import datasets, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.datasets.conftest import publish_manifest, publish_run, write_table

ANALYST = Principal(name="ana", role="analyst")
ENGINEER = Principal(name="eve", role="engineer")


def test_a_publish_registers_its_tables(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "gold", "revenue", rows=4)
    run_id = publish_run(ctx, publish_manifest({"gold.revenue": 4, "gold.margin": 2}, inputs=["silver.orders"]))
    found = {d["name"]: d for d in datasets.search(ctx, SYSTEM)}
    rev = found["gold.revenue"]
    assert rev["origin"] == "pipeline" and rev["owner"] == "finance"
    assert rev["last_run_id"] == run_id and rev["rows"] == 4 and rev["snapshot_id"] == 1001
    assert rev["in_catalog"] and rev["metadata_location"].endswith(".metadata.json")
    assert rev["format"] == "iceberg" and rev["environment"] == "dev" and rev["workspace"] == "default"
    assert found["gold.margin"]["in_catalog"] is False  # registered by the manifest, not in this catalog
    # a later publish keeps what people set, and refreshes run/snapshot/rows
    datasets.update(ctx, ENGINEER, "gold.revenue", owner="ana", description="Monthly revenue", add_tags=["finance"])
    run2 = publish_run(ctx, publish_manifest({"gold.revenue": 9}), owner="someone-else")
    rev = datasets.show(ctx, SYSTEM, "gold.revenue")
    assert (rev["owner"], rev["description"], rev["tags"]) == ("ana", "Monthly revenue", ["finance"])
    assert rev["last_run_id"] == run2 and rev["rows"] == 9
    assert rev["schema"][0] == {"name": "id", "type": "long", "required": False}
    assert rev["total_rows"] == 4 and rev["snapshots"] == 1


def test_phases_that_commit_nothing_register_nothing(ctx: Context, catalog: Any) -> None:
    publish_run(ctx, {"outputs": {"silver.staged": {"rows": 3, "content_hash": "0" * 64}}, "as_of": "x"})
    publish_run(ctx, {"outputs": {}, "lineage": {"inputs": ["gold.x"], "outputs": []}})
    assert datasets.search(ctx, SYSTEM) == []


def test_catalog_tables_are_listed_and_search_filters(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "bronze", "account_move")
    write_table(catalog, "silver", "journal_lines")
    write_table(catalog, "gold", "revenue", env="prod")
    names = [(d["environment"], d["name"], d["origin"]) for d in datasets.search(ctx, SYSTEM)]
    assert names == [("dev", "bronze.account_move", "catalog"), ("dev", "silver.journal_lines", "catalog"),
                     ("prod", "gold.revenue", "catalog")]
    datasets.update(ctx, ENGINEER, "silver.journal_lines", add_tags=["Finance", "pii"], owner="ana",
                    description="Posted journal lines")
    datasets.update(ctx, ENGINEER, "gold.revenue", env="prod", tags=["finance"])
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, tag="finance")] == ["silver.journal_lines",
                                                                                "gold.revenue"]
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, owner="ana")] == ["silver.journal_lines"]
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, q="posted")] == ["silver.journal_lines"]
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, q="account")] == ["bronze.account_move"]
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, env="prod")] == ["gold.revenue"]
    d = datasets.update(ctx, ENGINEER, "silver.journal_lines", remove_tags=["pii"])
    assert d["tags"] == ["finance"] and d["origin"] == "catalog"


def test_register_an_existing_table_by_its_metadata_location(ctx: Context, catalog: Any, tmp_path: Any) -> None:
    tbl = write_table(catalog, "silver", "legacy_orders", rows=5)
    location = tbl.metadata_location
    # the same file under another name: the table joins the catalog there and every engine sees it
    d = datasets.register(ctx, ENGINEER, "gold.orders_archive", location, description="archived",
                          tags=["archive"])
    assert d["origin"] == "manual" and d["owner"] == "eve" and d["in_catalog"]
    assert d["metadata_location"] == location and d["total_rows"] == 5 and d["tags"] == ["archive"]
    from lakehouse.lake import tables as lake_tables
    assert lake_tables.read_table(catalog, "gold", "dev", "orders_archive").num_rows == 5
    # registering the table the catalog already has, at its own metadata file, only adds it to the registry
    d = datasets.register(ctx, ENGINEER, "silver.legacy_orders", location)
    assert d["origin"] == "manual"
    with pytest.raises(Conflict) as exc:
        datasets.register(ctx, ENGINEER, "silver.legacy_orders", location)
    assert exc.value.code == "dataset_exists"
    other = write_table(catalog, "bronze", "other")
    with pytest.raises(Conflict) as exc:
        datasets.register(ctx, ENGINEER, "bronze.other", location)
    assert exc.value.code == "table_exists" and other.metadata_location in exc.value.message


def test_register_refuses_bad_input(ctx: Context, catalog: Any, tmp_path: Any) -> None:
    outside = tmp_path / "elsewhere" / "v1.metadata.json"
    outside.parent.mkdir()
    outside.write_text("{}")
    cases = [
        ("gold", str(outside), "invalid_dataset_name"),
        ("platinum.x", str(outside), "invalid_dataset_name"),
        ("gold.x", "/etc/passwd", "invalid_metadata_location"),
        ("gold.x", str(outside), "location_outside_warehouse"),
        ("gold.x", f"{ctx.settings.warehouse}/../elsewhere/v1.metadata.json", "invalid_metadata_location"),
        ("gold.x", f"{ctx.settings.warehouse}/nowhere/v1.metadata.json", "invalid_metadata_location"),
    ]
    for name, location, code in cases:
        with pytest.raises(InvalidInput) as exc:
            datasets.register(ctx, ENGINEER, name, location)
        assert exc.value.code == code, (name, location)
    with pytest.raises(InvalidInput) as exc:
        datasets.update(ctx, ENGINEER, "gold.x", add_tags=["has space"])
    assert exc.value.code == "invalid_tags"
    assert datasets.search(ctx, SYSTEM) == []


def test_roles_and_workspaces(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "gold", "revenue")
    assert [d["name"] for d in datasets.search(ctx, ANALYST)] == ["gold.revenue"]
    with pytest.raises(Forbidden):
        datasets.update(ctx, ANALYST, "gold.revenue", add_tags=["x"])
    with pytest.raises(Forbidden):
        datasets.register(ctx, ANALYST, "gold.copy", "x.metadata.json")
    with pytest.raises(Forbidden):
        datasets.search(ctx, Principal(name="robot", role="executor"))
    # another workspace's tables are invisible to a member of default only
    workspaces.create(ctx, "acme")
    write_table(catalog, "gold", "secret", workspace="acme")
    datasets.update(ctx, SYSTEM, "gold.secret", workspace="acme", add_tags=["x"])
    with ctx.db.read() as conn:
        from lakehouse.store import workspaces as ws_store
        default_id = ws_store.id_of(conn, "default")
    assert default_id is not None
    member = Principal(name="ana", role="analyst", workspace_ids=frozenset({default_id}))
    with pytest.raises(NotFound):
        datasets.search(ctx, member, workspace="acme")
    with pytest.raises(NotFound):
        datasets.show(ctx, member, "gold.secret", workspace="acme")
    assert [d["name"] for d in datasets.search(ctx, SYSTEM, workspace="acme")] == ["gold.secret"]
    with pytest.raises(NotFound):
        datasets.show(ctx, SYSTEM, "gold.nothing")


def test_freshness_and_quality_status(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "gold", "revenue")
    d = datasets.show(ctx, SYSTEM, "gold.revenue")
    assert d["freshness"]["state"] == "unknown" and d["quality"]["state"] == "unknown"
    from lakehouse.services import freshness
    from lakehouse.store import queue
    run_id = publish_run(ctx, publish_manifest({"gold.revenue": 3}))
    with ctx.db.write() as conn:
        run = queue.get_run(conn, run_id)
        assert run is not None
        now = ctx.clock()
        from lakehouse.store import ops_reads
        ops_reads.freshness_put(conn, run["workspace_id"], "dev", "gold.revenue", newest_change_at=now,
                                run_id=run_id, now=now)
        queue.append_events(conn, run_id, [{"type": "DQ_RESULT", "ts": now, "level": "info", "message": "dq",
                                            "phase": "publish", "payload": {"result": {
                                                "type": "not_null", "table": "gold.revenue", "passed": False}}}])
    assert freshness is not None
    d = datasets.show(ctx, SYSTEM, "gold.revenue")
    assert d["freshness"]["state"] == "fresh" and d["freshness"]["slo_s"] == 86400
    assert d["quality"] == {"state": "failed", "checks": 1, "failed": 1, "run_id": run_id}
