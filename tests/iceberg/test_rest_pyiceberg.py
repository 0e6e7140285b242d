"""pyiceberg's RestCatalog against our /iceberg catalog served by uvicorn: the client's whole life
cycle of a table, and that the REST catalog and the embedded SQL catalog are one store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import EqualTo
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from tests.iceberg.conftest import Served

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "tag", StringType(), required=False))


def _ids(table: Any, **scan: Any) -> list[int]:
    return sorted(table.scan(**scan).to_arrow().column("id").to_pylist())


def test_config_names_the_workspace_prefix_and_endpoints(served: Served) -> None:
    cat = served.catalog()
    assert cat.properties["prefix"] == "default"
    assert cat.url("namespaces").endswith("/iceberg/v1/default/namespaces")
    acme = served.catalog(warehouse="acme")
    assert acme.properties["prefix"] == "acme"


def test_table_life_cycle(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog()
    assert ("bronze_dev",) in cat.list_namespaces()  # the medallion namespaces are always there
    cat.create_namespace("sandbox", {"owner": "data-team"})
    with pytest.raises(NamespaceAlreadyExistsError):
        cat.create_namespace("sandbox")
    assert cat.load_namespace_properties("sandbox") == {"owner": "data-team"}
    summary = cat.update_namespace_properties("sandbox", removals={"owner", "nope"}, updates={"team": "x"})
    assert summary.removed == ["owner"] and summary.missing == ["nope"] and summary.updated == ["team"]
    assert cat.namespace_exists("sandbox") and not cat.namespace_exists("nothere")

    tbl = cat.create_table("sandbox.events", SCHEMA)
    with pytest.raises(TableAlreadyExistsError):
        cat.create_table("sandbox.events", SCHEMA)
    tbl.append(rows([1, 2, 3]))
    first = tbl.metadata.current_snapshot_id
    tbl.append(rows([4]))
    assert _ids(cat.load_table("sandbox.events")) == [1, 2, 3, 4]
    tbl.overwrite(rows([10, 11], "o"))
    assert _ids(tbl) == [10, 11]
    tbl.delete(EqualTo(term="id", value=10))
    assert _ids(cat.load_table("sandbox.events")) == [11]
    assert _ids(tbl, snapshot_id=first) == [1, 2, 3]  # time travel

    with tbl.update_schema() as upd:  # schema evolution
        upd.add_column("amount", LongType())
    tbl.append(pa.table({"id": pa.array([12], pa.int64()), "tag": ["n"], "amount": pa.array([5], pa.int64())}))
    loaded = cat.load_table("sandbox.events")
    assert [f.name for f in loaded.schema().fields] == ["id", "tag", "amount"]
    assert loaded.scan(row_filter=EqualTo(term="id", value=12)).to_arrow().column("amount").to_pylist() == [5]

    with loaded.update_spec() as spec:  # partition evolution
        spec.add_identity("tag")
    loaded.append(rows([13], "p"))
    again = cat.load_table("sandbox.events")
    assert again.spec().fields[0].name == "tag" and len(again.metadata.partition_specs) == 2
    assert _ids(again) == [11, 12, 13]
    assert len(again.metadata.snapshots) >= 6

    with pytest.raises(NamespaceNotEmptyError):
        cat.drop_namespace("sandbox")
    cat.rename_table("sandbox.events", "sandbox.events2")
    assert cat.table_exists("sandbox.events2") and not cat.table_exists("sandbox.events")
    assert cat.list_tables("sandbox") == [("sandbox", "events2")]
    cat.drop_table("sandbox.events2")
    with pytest.raises(NoSuchTableError):
        cat.load_table("sandbox.events2")
    cat.drop_namespace("sandbox")
    with pytest.raises(NoSuchNamespaceError):
        cat.load_namespace_properties("sandbox")


def test_stage_create_register_and_purge(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog()
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="tag"))
    with cat.create_table_transaction("silver_dev.staged", SCHEMA, partition_spec=spec) as tx:
        tx.append(rows([1, 2], "a"))
    staged = cat.load_table("silver_dev.staged")
    assert _ids(staged) == [1, 2] and staged.spec().fields[0].name == "tag"

    location = staged.metadata_location
    cat.drop_table("silver_dev.staged")  # without purge: the files stay, so it can be registered again
    back = cat.register_table("silver_dev.again", location)
    assert _ids(back) == [1, 2]
    data_files = [t.file.file_path for t in back.scan().plan_files()]
    cat.purge_table("silver_dev.again")
    from pyiceberg.io import load_file_io

    io = load_file_io({}, location)
    assert not io.new_input(location).exists() and not any(io.new_input(f).exists() for f in data_files)


def test_rest_and_embedded_catalog_are_one_store(served: Served, rows: Callable[..., pa.Table]) -> None:
    embedded = catalog_for(served.ctx.settings)
    lake_tables.write_table(embedded, "gold", "dev", "from_pipeline", rows([1, 2]))
    lake_tables.write_table(embedded, "gold", "dev", "acme_only", rows([7]), workspace="acme")
    cat = served.catalog()
    assert _ids(cat.load_table("gold_dev.from_pipeline")) == [1, 2]
    assert ("gold_dev", "acme_only") not in cat.list_tables("gold_dev")
    assert _ids(served.catalog(warehouse="acme").load_table("gold_dev.acme_only")) == [7]

    cat.create_table("silver_dev.from_rest", SCHEMA).append(rows([5]))
    read = lake_tables.read_table(embedded, "silver", "dev", "from_rest")
    assert read.column("id").to_pylist() == [5]


def _race(served: Served, name: str, rows: Callable[..., pa.Table]) -> list[BaseException]:
    """Two clients load the same snapshot, then append at the same moment."""
    a, b = served.catalog().load_table(name), served.catalog().load_table(name)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def append(table: Any, ids: list[int]) -> None:
        tx = table.transaction()
        tx.append(rows(ids))
        barrier.wait()
        try:
            tx.commit_transaction()
        except CommitFailedException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(a, [1])), threading.Thread(target=append, args=(b, [2]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_clients_commit_at_once_exactly_one_fails(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog()
    # no client-side retry: the loser sees the server's 409
    cat.create_table("bronze_dev.race", SCHEMA, properties={"commit.retry.num-retries": "0"}).append(rows([0]))
    errors = _race(served, "bronze_dev.race", rows)
    assert len(errors) == 1 and "CommitFailedException" in str(errors[0])
    got = _ids(cat.load_table("bronze_dev.race"))
    assert got in ([0, 1], [0, 2])  # the winner's rows, the earlier ones, nothing else
    loser = served.catalog().load_table("bronze_dev.race")  # the loser reloads and commits again
    loser.append(rows([2] if got == [0, 1] else [1]))
    assert _ids(cat.load_table("bronze_dev.race")) == [0, 1, 2]


def test_concurrent_appends_with_client_retries_lose_nothing(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog()
    cat.create_table("bronze_dev.race2", SCHEMA).append(rows([0]))
    assert _race(served, "bronze_dev.race2", rows) == []  # pyiceberg retries the 409 on fresh metadata
    table = cat.load_table("bronze_dev.race2")
    assert _ids(table) == [0, 1, 2] and len(table.metadata.snapshots) == 3


def test_oauth_client_credentials(served: Served, rows: Callable[..., pa.Table]) -> None:
    cat = served.catalog(credential=f"engineer:{served.tokens['engineer']}",
                         **{"oauth2-server-uri": f"{served.uri}/v1/oauth/tokens"})
    cat.create_table("bronze_dev.oauth", SCHEMA).append(rows([1]))
    assert _ids(cat.load_table("bronze_dev.oauth")) == [1]
