"""DuckDB's iceberg extension attached to our /iceberg catalog reads what pyiceberg wrote through it
(extensions loaded offline from their wheels, lakehouse.lake.duck.new_connection)."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from lakehouse.lake.duck import new_connection
from tests.iceberg.conftest import Served
from tests.iceberg.test_rest_pyiceberg import SCHEMA


def _attach(served: Served, auth: str, warehouse: str = "default") -> duckdb.DuckDBPyConnection:
    con = new_connection("avro", "iceberg", "httpfs")
    con.execute(f"CREATE SECRET rest_auth ({auth})")
    con.execute(f"ATTACH '{warehouse}' AS lake (TYPE iceberg, ENDPOINT '{served.uri}', SECRET rest_auth)")
    return con


def test_duckdb_attach_reads_what_pyiceberg_wrote(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog()
    table = cat.create_table("silver_dev.orders", SCHEMA)
    table.append(rows([1, 2, 3], "a"))
    first = table.metadata.current_snapshot_id
    table.append(rows([4], "b"))

    con = _attach(served, f"TYPE iceberg, TOKEN '{served.tokens['viewer']}'")
    try:
        got = con.execute("SELECT id, tag FROM lake.silver_dev.orders ORDER BY id").fetchall()
        assert got == [(1, "a"), (2, "a"), (3, "a"), (4, "b")]
        old = con.execute(
            f"SELECT count(*) FROM lake.silver_dev.orders AT (VERSION => {first})").fetchone()
        assert old == (3,)
        schemas = {r[0] for r in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'lake'").fetchall()}
        assert {"bronze_dev", "silver_dev", "gold_prod"} <= schemas
    finally:
        con.close()


def test_duckdb_oauth_client_credentials_and_workspace_warehouse(served: Served,
                                                               rows: Callable[..., pa.Table]) -> None:
    served.catalog(warehouse="acme").create_table("gold_dev.kpis", SCHEMA).append(rows([7], "acme"))
    con = _attach(served, f"TYPE iceberg, CLIENT_ID 'analyst', CLIENT_SECRET '{served.tokens['analyst']}', "
                          f"OAUTH2_SERVER_URI '{served.uri}/v1/oauth/tokens'", warehouse="acme")
    try:
        assert con.execute("SELECT id, tag FROM lake.gold_dev.kpis").fetchall() == [(7, "acme")]
    finally:
        con.close()
