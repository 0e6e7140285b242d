"""Iceberg tables through pyiceberg's SQL catalog in the metadata database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.lake import hashing, tables
from lakehouse.lake.catalog import (
    catalog_uri,
    duckdb_s3_secret,
    namespace,
    parse_namespace,
    storage_properties,
    warehouse_uri,
)
from lakehouse.lake.tables import TableNotFound, WriteError, read_table, snapshots, write_table


def _rows(catalog: Any, layer: str, env: str, name: str, **kw: Any) -> list[dict[str, Any]]:
    return sorted(read_table(catalog, layer, env, name, **kw).to_pylist(), key=lambda r: r["id"])


def _metadata_files(catalog: Any, name: str, env: str = "dev") -> int:
    t = tables.load(catalog, "bronze", env, name)
    return len(t.metadata.metadata_log) + 1


def test_create_overwrite_append_each_one_commit(catalog: Any) -> None:
    first = write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [1, 2], "amount": [10.0, 20.0]}),
                        snapshot_properties={"run_id": "r1", "content_hash": "abc"})
    assert first.created and first.rows == 2 and first.table == "bronze.orders"
    assert first.identifier == "bronze_dev.orders"
    assert _metadata_files(catalog, "orders") == 1  # created with its data in one commit
    assert _rows(catalog, "bronze", "dev", "orders") == [{"id": 1, "amount": 10.0}, {"id": 2, "amount": 20.0}]

    second = write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [3], "amount": [30.0]}))
    assert not second.created and second.snapshot_id != first.snapshot_id
    assert _metadata_files(catalog, "orders") == 2
    assert _rows(catalog, "bronze", "dev", "orders") == [{"id": 3, "amount": 30.0}]

    third = write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [4], "amount": [40.0]}), mode="append")
    assert _metadata_files(catalog, "orders") == 3
    assert [r["id"] for r in _rows(catalog, "bronze", "dev", "orders")] == [3, 4]
    assert tables.current_metadata_location(catalog, "bronze", "dev", "orders") == third.metadata_location

    snaps = snapshots(catalog, "bronze", "dev", "orders")
    assert snaps[0]["snapshot_id"] == first.snapshot_id and snaps[0]["summary"]["run_id"] == "r1"
    assert snaps[-1]["snapshot_id"] == third.snapshot_id and snaps[-1]["current"]
    assert [s["current"] for s in snaps].count(True) == 1
    assert all(isinstance(s["timestamp"], dt.datetime) and s["timestamp"].tzinfo for s in snaps)
    assert tables.row_count(tables.load(catalog, "bronze", "dev", "orders").metadata) == 2


def test_time_travel_reads_an_old_snapshot(catalog: Any) -> None:
    v1 = write_table(catalog, "silver", "dev", "t", pa.table({"id": [1, 2, 3]}))
    write_table(catalog, "silver", "dev", "t", pa.table({"id": [9]}))
    assert _rows(catalog, "silver", "dev", "t", snapshot_id=v1.snapshot_id) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert _rows(catalog, "silver", "dev", "t") == [{"id": 9}]
    with pytest.raises(LookupError):
        read_table(catalog, "silver", "dev", "t", snapshot_id=12345)


def test_schema_evolution_by_name(catalog: Any) -> None:
    write_table(catalog, "bronze", "dev", "p", pa.table({"id": pa.array([1], pa.int32()), "name": ["a"]}))
    res = write_table(catalog, "bronze", "dev", "p",
                      pa.table({"id": pa.array([2], pa.int64()), "extra": [1.5]}), mode="append")
    assert res.added_columns == ["extra"]
    schema = tables.load(catalog, "bronze", "dev", "p").schema()
    assert [(f.name, str(f.field_type)) for f in schema.fields] == [("id", "long"), ("name", "string"),
                                                                    ("extra", "double")]
    assert _rows(catalog, "bronze", "dev", "p") == [{"id": 1, "name": "a", "extra": None},
                                                     {"id": 2, "name": None, "extra": 1.5}]


def test_a_failing_write_leaves_the_previous_snapshot(catalog: Any) -> None:
    good = write_table(catalog, "bronze", "dev", "f", pa.table({"id": [1, 2]}))
    with pytest.raises(WriteError, match="id"):
        write_table(catalog, "bronze", "dev", "f", pa.table({"id": ["not a number"]}))

    def batches() -> Any:
        yield pa.record_batch({"id": pa.array([7], pa.int64())})
        raise RuntimeError("source connection lost")

    reader = pa.RecordBatchReader.from_batches(pa.schema({"id": pa.int64()}), batches())
    with pytest.raises(RuntimeError, match="connection lost"):
        write_table(catalog, "bronze", "dev", "f", reader)
    t = tables.load(catalog, "bronze", "dev", "f")
    assert t.metadata.current_snapshot_id == good.snapshot_id
    assert t.metadata_location == good.metadata_location
    assert _rows(catalog, "bronze", "dev", "f") == [{"id": 1}, {"id": 2}]


def test_a_streamed_write_and_arrow_types_iceberg_lacks(catalog: Any) -> None:
    batches = [pa.record_batch({"id": pa.array([i], pa.uint32()),
                                "at": pa.array([i * 10**9], pa.timestamp("ns", "Europe/Paris")),
                                "kind": pa.array(["x"]).dictionary_encode(), "nothing": pa.nulls(1)})
               for i in range(3)]
    res = write_table(catalog, "bronze", "dev", "s", pa.RecordBatchReader.from_batches(batches[0].schema, batches))
    assert res.rows == 3
    out = read_table(catalog, "bronze", "dev", "s")
    assert out.schema.field("at").type == pa.timestamp("us", "UTC")
    assert sorted(out.column("id").to_pylist()) == [0, 1, 2]
    assert out.column("nothing").to_pylist() == [None] * 3


def test_empty_tables_and_names(catalog: Any) -> None:
    res = write_table(catalog, "gold", "dev", "empty", pa.table({"id": pa.array([], pa.int64())}))
    assert res.rows == 0 and res.snapshot_id is not None
    assert read_table(catalog, "gold", "dev", "empty").num_rows == 0
    write_table(catalog, "gold", "dev", "empty", pa.table({"id": pa.array([], pa.int64())}))  # no warning
    with pytest.raises(TableNotFound):
        read_table(catalog, "gold", "dev", "missing")
    for bad in [("platinum", "dev", "x"), ("gold", "qa", "x"), ("gold", "dev", "Bad-Name")]:
        with pytest.raises(ValueError):
            write_table(catalog, *bad, pa.table({"id": [1]}))


def test_environments_and_workspaces_are_separate_namespaces(catalog: Any) -> None:
    write_table(catalog, "bronze", "dev", "same", pa.table({"id": [1]}))
    write_table(catalog, "bronze", "prod", "same", pa.table({"id": [2]}))
    write_table(catalog, "bronze", "dev", "same", pa.table({"id": [3]}), workspace="acme")
    assert _rows(catalog, "bronze", "dev", "same") == [{"id": 1}]
    assert _rows(catalog, "bronze", "prod", "same") == [{"id": 2}]
    assert _rows(catalog, "bronze", "dev", "same", workspace="acme") == [{"id": 3}]
    assert [r.identifier for r in tables.list_tables(catalog, "dev")] == ["bronze_dev.same"]
    assert [r.identifier for r in tables.list_tables(catalog, "dev", workspace="acme")] == ["acme__bronze_dev.same"]
    assert {r.env for r in tables.list_tables(catalog, None)} == {"dev", "prod"}


def test_concurrent_appends_all_land(catalog: Any) -> None:
    write_table(catalog, "bronze", "dev", "c", pa.table({"id": pa.array([0], pa.int64())}))
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            write_table(catalog, "bronze", "dev", "c", pa.table({"id": pa.array([i], pa.int64())}), mode="append",
                        retries=20)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [r["id"] for r in _rows(catalog, "bronze", "dev", "c")] == [0, 1, 2, 3]


def test_content_hash_survives_an_iceberg_round_trip(catalog: Any) -> None:
    data = pa.table({"id": pa.array([3, 1, 2], pa.int32()), "amount": pa.array([Decimal("1.50"), None, Decimal("2")],
                                                                            pa.decimal128(12, 2)),
                     "at": pa.array([dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)] * 3, pa.timestamp("ns", "UTC")),
                     "name": ["c", "a", "b"]})
    write_table(catalog, "silver", "dev", "h", data)
    assert hashing.content_hash(read_table(catalog, "silver", "dev", "h")) == hashing.content_hash(data)


# --- naming and storage configuration (no database) ---------------------------------------------


def test_namespace_naming() -> None:
    assert namespace("bronze", "dev") == "bronze_dev"
    assert namespace("gold", "prod", "acme") == "acme__gold_prod"
    for ns, parts in [("bronze_dev", ("default", "bronze", "dev")), ("acme__gold_prod", ("acme", "gold", "prod"))]:
        p = parse_namespace(ns)
        assert p is not None and (p.workspace, p.layer, p.env) == parts
    for ns in ["bronze", "bronze_qa", "tin_dev", "default__bronze_dev", "x"]:
        assert parse_namespace(ns) is None


def test_storage_properties_from_the_environment(tmp_path: Any) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "se'cret"}
    props = storage_properties("s3://lake/wh", None, env)
    assert props == {"s3.endpoint": "http://127.0.0.1:9000", "s3.access-key-id": "key",
                     "s3.secret-access-key": "se'cret", "s3.region": "us-east-1",
                     "s3.force-virtual-addressing": "false"}
    secret = duckdb_s3_secret(props)
    assert secret is not None and "ENDPOINT '127.0.0.1:9000'" in secret and "USE_SSL false" in secret
    assert "SECRET 'se''cret'" in secret and "URL_STYLE 'path'" in secret
    assert storage_properties(str(tmp_path), None, env) == {}
    assert storage_properties("s3://b/p", None, {})["s3.force-virtual-addressing"] == "true"
    assert warehouse_uri(str(tmp_path / "wh")) == (tmp_path / "wh").as_uri()
    # the settings win over AWS_*: the catalog reads no environment variable itself
    from lakehouse.settings import Settings

    s = Settings(home=tmp_path, s3_endpoint="https://minio.internal:9000", s3_access_key_id="mine",
                 s3_secret_access_key="also-mine", s3_url_style="vhost")
    props = storage_properties("s3://lake/wh", s, env)
    assert props["s3.endpoint"] == "https://minio.internal:9000" and props["s3.access-key-id"] == "mine"
    assert props["s3.secret-access-key"] == "also-mine" and props["s3.force-virtual-addressing"] == "true"
    assert storage_properties(str(tmp_path), s, env) == {}
    assert catalog_uri("sqlite:////x/control.db") == "sqlite:////x/control.db?timeout=30"
    assert catalog_uri("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
