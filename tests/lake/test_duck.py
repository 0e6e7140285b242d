"""DuckDB over the lake: bronze/silver/gold views per environment, pinned snapshots, time travel, sandbox."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest

from lakehouse.lake import duck
from lakehouse.lake.tables import write_table


def test_views_by_layer_and_environment(catalog: Any) -> None:
    write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [1, 2]}))
    write_table(catalog, "bronze", "prod", "orders", pa.table({"id": [10, 20, 30]}))
    write_table(catalog, "silver", "dev", "orders", pa.table({"id": [5]}))
    write_table(catalog, "gold", "dev", "orders", pa.table({"id": [7]}), workspace="acme")
    with duck.connect(catalog, "dev") as lake:
        assert lake.con.sql("SELECT sum(id) FROM bronze.orders").fetchone() == (3,)
        assert lake.con.sql("SELECT sum(id) FROM silver.orders").fetchone() == (5,)
        with pytest.raises(duckdb.CatalogException):
            lake.con.sql("SELECT * FROM gold.orders")  # another workspace's table
    with duck.connect(catalog, "prod") as lake:
        assert lake.con.sql("SELECT sum(id) FROM bronze.orders").fetchone() == (60,)
        assert sorted(lake.tables) == ["bronze.orders"]
    with duck.connect(catalog, "dev", workspace="acme") as lake:
        assert lake.con.sql("SELECT id FROM gold.orders").fetchall() == [(7,)]


def test_a_connection_reads_the_snapshot_current_when_opened(catalog: Any) -> None:
    first = write_table(catalog, "silver", "dev", "t", pa.table({"id": [1]}))
    with duck.connect(catalog, "dev") as lake:
        second = write_table(catalog, "silver", "dev", "t", pa.table({"id": [1, 2]}), mode="append")
        assert lake.con.sql("SELECT count(*) FROM silver.t").fetchone() == (1,)  # still the old snapshot
        assert lake.reads("SELECT * FROM silver.t") == [{"table": "silver.t", "snapshot_id": first.snapshot_id}]
    with duck.connect(catalog, "dev") as lake:
        assert lake.con.sql("SELECT count(*) FROM silver.t").fetchone() == (3,)
        assert lake.reads("SELECT * FROM silver.t") == [{"table": "silver.t", "snapshot_id": second.snapshot_id}]


def test_time_travel_and_what_a_query_reads(catalog: Any) -> None:
    v1 = write_table(catalog, "bronze", "dev", "t", pa.table({"id": [1, 2, 3]}))
    v2 = write_table(catalog, "bronze", "dev", "t", pa.table({"id": [4]}))
    write_table(catalog, "gold", "dev", "g", pa.table({"id": [1]}))
    with duck.connect(catalog, "dev", views=False) as lake:
        q = f"SELECT count(*) FROM at_snapshot('bronze.t', {v1.snapshot_id})"
        assert lake.sql(q).fetchone() == (3,)
        assert lake.sql(f"SELECT count(*) FROM at_snapshot('BRONZE.T', {v2.snapshot_id})").fetchone() == (1,)
        ids = [r[0] for r in lake.sql("SELECT snapshot_id FROM table_snapshots('bronze.t') ORDER BY sequence_number")
               .fetchall()]
        assert ids[0] == v1.snapshot_id and ids[-1] == v2.snapshot_id
        both = (f"WITH old AS (SELECT * FROM at_snapshot('bronze.t', {v1.snapshot_id})) "
                "SELECT * FROM old UNION ALL SELECT * FROM bronze.t WHERE id IN (SELECT id FROM gold.g)")
        lake.prepare(both)
        assert lake.views == {"bronze.t", "gold.g"}  # only the views the query needs were created
        expected = [("bronze.t", v1.snapshot_id), ("bronze.t", v2.snapshot_id),
                    ("gold.g", lake.pinned_snapshot_id("gold.g"))]
        assert sorted((r["table"], r["snapshot_id"]) for r in lake.reads(both)) == sorted(expected)
        with pytest.raises(duckdb.Error, match=r"no lake table silver\.nope"):
            lake.sql("SELECT * FROM at_snapshot('silver.nope', 1)").fetchall()


def test_sandbox_reads_only_this_environments_tables(catalog: Any, tmp_path: Any) -> None:
    write_table(catalog, "bronze", "dev", "t", pa.table({"id": [1]}))
    prod = write_table(catalog, "bronze", "prod", "t", pa.table({"id": [2]}))
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with duck.connect(catalog, "dev", sandbox=True) as lake:
        assert lake.con.sql("SELECT id FROM bronze.t").fetchall() == [(1,)]
        for attack in [f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM iceberg_scan('{prod.metadata_location}')",
                       f"SELECT * FROM '{secret}'"]:
            with pytest.raises(duckdb.PermissionException):
                lake.con.sql(attack).fetchall()
        with pytest.raises(duckdb.Error, match="locked"):
            lake.con.execute("SET enable_external_access = true")


def test_extensions_load_offline() -> None:
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("avro", "iceberg", "httpfs"):
        duck.load_extension(con, name)
    loaded = {r[0] for r in con.sql("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    assert {"avro", "iceberg", "httpfs"} <= loaded
    with pytest.raises(duck.ExtensionMissing):
        duck.load_extension(con, "no_such_extension")
