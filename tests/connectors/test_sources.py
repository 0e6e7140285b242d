"""Source readers on SQLite and PostgreSQL: exact types, incremental reads, delete detection, errors."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse.connectors import SourceError, SourceUnavailable, open_source
from lakehouse.connectors.arrow_types import DECIMAL
from lakehouse.connectors.odoo_schema import BY_NAME, TABLES
from tests.connectors.conftest import NOW, PG_ADMIN, WATCHED, Mutated
from tests.connectors.dbutil import execute, is_pg, query

MONEY = ("debit", "credit", "balance", "amount_currency", "amount_residual", "price_unit", "quantity")


def _sorted(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def test_schema_maps_odoo_types(seeded_url: str) -> None:
    with open_source(seeded_url) as src:
        assert {t.name for t in TABLES} <= set(src.tables())
        schema = dict(src.schema("account_move_line"))
        assert [c for c, _ in src.schema("account_move_line")] == list(BY_NAME["account_move_line"].column_names)
        for money in MONEY:
            assert schema[money] == DECIMAL, money
        assert schema["write_date"] == pa.timestamp("us")
        assert schema["date"] == pa.date32()
        assert schema["reconciled"] == pa.bool_()
        assert schema["analytic_distribution"] == pa.string()
        assert pa.types.is_integer(schema["move_id"])
        assert dict(src.schema("product_template"))["name"] == pa.string()
        assert dict(src.schema("sale_order_line"))["price_tax"] == pa.float64()  # a Float without digits in Odoo


def test_read_table_is_exact_and_ordered(seeded_url: str) -> None:
    with open_source(seeded_url) as src:
        table = src.read_table("account_move_line")
        assert table.schema == src.arrow_schema("account_move_line")
        assert table.num_rows == src.count("account_move_line")
        assert _sorted(table.column("id").to_pylist())
    cast = "::text" if is_pg(seeded_url) else ""
    raw = query(seeded_url, f"SELECT {', '.join(c + cast for c in MONEY)} FROM account_move_line ORDER BY id")
    for i, money in enumerate(MONEY):
        exact = [None if r[i] is None else Decimal(r[i]) for r in raw]
        assert table.column(money).to_pylist() == exact, money
        assert pc.sum(table.column(money)).as_py() == sum((v for v in exact if v is not None), Decimal(0))
    if is_pg(seeded_url):  # the database's own exact sums
        sums = query(seeded_url, f"SELECT {', '.join(f'sum({c})' for c in MONEY)} FROM account_move_line")[0]
        assert [pc.sum(table.column(c)).as_py() for c in MONEY] == list(sums)


def test_json_columns_arrive_as_json_text(seeded_url: str) -> None:
    with open_source(seeded_url) as src:
        names = src.read_table("product_template", ["name"]).column("name").to_pylist()
    assert names and all(json.loads(n)["en_US"] for n in names)


def test_numbers_beyond_float_precision_stay_exact(mutated: Mutated) -> None:
    url = mutated.url
    kind = "numeric" if is_pg(url) else "DECIMAL_TEXT"
    execute(url, "DROP TABLE IF EXISTS probe_numbers")
    execute(url, f"CREATE TABLE probe_numbers (id integer PRIMARY KEY, amount {kind}, note text)")
    execute(url, "INSERT INTO probe_numbers VALUES (3, '12345678901234567.89', 'big'), (1, '0.0000000001', 'tiny'), "
                 "(2, '-0.10', NULL), (4, NULL, 'null')")
    with open_source(url) as src:
        table = src.read_table("probe_numbers")
    assert table.column("id").to_pylist() == [1, 2, 3, 4]
    assert table.column("amount").type == DECIMAL
    assert table.column("amount").to_pylist() == [Decimal("0.0000000001"), Decimal("-0.10"),
                                                    Decimal("12345678901234567.89"), None]
    assert pc.sum(table.column("amount")).as_py() == Decimal("12345678901234567.7900000001")
    assert Decimal(float("12345678901234567.89")) != Decimal("12345678901234567.89")  # what a float would do


def test_incremental_read_returns_exactly_the_changed_rows(mutated: Mutated) -> None:
    changes = mutated.changes
    with open_source(mutated.url) as src:
        for table in WATCHED:
            expected = set(changes["updated"].get(table, [])) | set(changes["inserted"].get(table, []))
            assert expected, table
            changed = src.read_table(table, where_watermark=("write_date", NOW))
            assert changed.column("id").to_pylist() == sorted(expected), table
            assert set(changed.column("write_date").to_pylist()) == {NOW}
            aware = src.read_table(table, ["id"], where_watermark=("write_date", NOW.replace(tzinfo=UTC)))
            assert aware.column("id").to_pylist() == sorted(expected)
            # from the previous watermark (inclusive): the changes plus rows stamped exactly at it
            previous = mutated.watermarks[table]
            since = src.read_table(table, ["id", "write_date"], where_watermark=("write_date", previous))
            ids = since.column("id").to_pylist()
            at_previous = {i for i, w in zip(ids, since.column("write_date").to_pylist(), strict=True)
                           if w == previous}
            assert _sorted(ids)
            assert at_previous and set(ids) == expected | at_previous, table
            assert src.max_value(table, "write_date") == NOW


def test_ids_detect_hard_deletes(mutated: Mutated) -> None:
    changes = mutated.changes
    with open_source(mutated.url) as src:
        for table in ("account_move", "account_move_line"):
            now = src.ids(table)
            assert pa.types.is_integer(now.type) and _sorted(now.to_pylist())
            before, after = set(mutated.ids[table]), set(now.to_pylist())
            assert sorted(before - after) == changes["deleted"][table]
            assert sorted(after - before) == changes["inserted"][table]


def test_reads_stay_in_id_order_after_updates(mutated: Mutated) -> None:
    with open_source(mutated.url) as src:
        full = src.read_table("account_move_line")
        names = src.read_table("account_move_line", ["move_name", "parent_state"])
    assert _sorted(full.column("id").to_pylist())
    assert names.column_names == ["move_name", "parent_state"]
    assert names.column("move_name").to_pylist() == full.column("move_name").to_pylist()


def test_empty_incremental_read_keeps_the_schema(seeded_url: str) -> None:
    with open_source(seeded_url) as src:
        empty = src.read_table("account_move", where_watermark=("write_date", datetime(2999, 1, 1)))
        assert empty.num_rows == 0 and empty.schema == src.arrow_schema("account_move")
        assert src.max_value("account_move", "amount_total") == max(
            src.read_table("account_move", ["amount_total"]).column("amount_total").to_pylist())


def test_schema_shows_drift(mutated: Mutated) -> None:
    url = mutated.url
    execute(url, "DROP TABLE IF EXISTS probe_drift")
    execute(url, "CREATE TABLE probe_drift (id integer PRIMARY KEY, label text)")
    with open_source(url) as src:
        before = src.schema("probe_drift")
    execute(url, f"ALTER TABLE probe_drift ADD COLUMN amount {'numeric' if is_pg(url) else 'DECIMAL_TEXT'}")
    with open_source(url) as src:
        after = src.schema("probe_drift")
    assert [c for c, _ in before] == ["id", "label"]
    assert after[:2] == before and after[2] == ("amount", DECIMAL)


def test_unknown_table_or_column_is_a_source_error(seeded_url: str) -> None:
    with open_source(seeded_url) as src:
        with pytest.raises(SourceError, match="unknown table 'nope'") as err:
            src.read_table("nope")
        assert not err.value.retryable and not isinstance(err.value, SourceUnavailable)
        with pytest.raises(SourceError, match="unknown column nope in table 'account_move'"):
            src.read_table("account_move", ["id", "nope"])
        with pytest.raises(SourceError, match="unknown column"):
            src.read_table("account_move", where_watermark=("nope", 1))
        with pytest.raises(SourceError, match="unknown column"):
            src.max_value("account_move", "nope")
        with pytest.raises(SourceError):
            src.ids("nope")


@pytest.mark.postgres
def test_unreachable_postgres_is_source_unavailable() -> None:
    with pytest.raises(SourceUnavailable) as err:
        open_source("postgresql+psycopg://odoo:s3cret@127.0.0.1:1/odoo")
    message = err.value.message
    assert err.value.retryable and "\n" not in message and "s3cret" not in message
    assert message.startswith("cannot connect to postgresql://odoo@127.0.0.1:1/odoo: ")
    with pytest.raises(SourceUnavailable, match="does not exist"):
        open_source(f"{PG_ADMIN.rsplit('/', 1)[0]}/lakehouse_no_such_database")


def test_bad_sqlite_and_unsupported_urls(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(SourceUnavailable, match="no such file"):
        open_source(f"sqlite:///{tmp_path}/missing.db")
    with pytest.raises(SourceError, match="unsupported source URL scheme 'mysql'"):
        open_source("mysql://localhost/odoo")
    with pytest.raises(SourceError, match="needs a file path"):
        open_source("sqlite://")
    with pytest.raises(SourceError, match="needs a database name"):
        open_source("postgresql://localhost")
