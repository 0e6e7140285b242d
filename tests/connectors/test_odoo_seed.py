"""The Odoo 17 seed on SQLite and PostgreSQL: shape, size, determinism, accounting invariants."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from lakehouse.connectors import SeedError, SourceError, SourceUnavailable, open_source, seed
from lakehouse.connectors.odoo_schema import TABLES
from tests.connectors.conftest import BACKENDS, SEEDED_SCALE, new_url, pair_url
from tests.connectors.dbutil import content_hash, is_pg, query


def test_row_counts_grow_linearly_with_scale(seeded_url: str, seeded_pair: tuple[str, str]) -> None:
    small = pair_url(seeded_pair, "postgres" if is_pg(seeded_url) else "sqlite")
    with open_source(small) as src:
        one = {t.name: src.count(t.name) for t in TABLES}
    with open_source(seeded_url) as src:
        two = {t.name: src.count(t.name) for t in TABLES}
    assert SEEDED_SCALE == 2
    assert 1000 <= one["account_move_line"] < 1100
    assert 2000 <= two["account_move_line"] < 2100
    for table in ("account_move", "account_payment", "sale_order", "sale_order_line"):
        assert 1.6 < two[table] / one[table] < 2.4, table
    for table in ("res_partner", "product_template", "product_product"):  # affine: a fixed base + per scale
        assert two[table] > one[table], table


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_gives_identical_tables_and_reseeding_needs_reset(
        backend: str, seeded_pair: tuple[str, str], tmp_path: Path, pg_factory: Callable[[], str]) -> None:
    reference = pair_url(seeded_pair, backend)
    again = new_url(backend, tmp_path, pg_factory)
    counts = seed(again, 1)
    with open_source(reference) as src:
        assert counts == {t.name: src.count(t.name) for t in TABLES}
    for table in TABLES:
        assert content_hash(again, table.name) == content_hash(reference, table.name), table.name
    with pytest.raises(SeedError, match="already has Odoo tables"):
        seed(again, 1)
    assert seed(again, 1, reset=True) == counts  # reset drops and recreates the same rows
    assert content_hash(again, "account_move_line") == content_hash(reference, "account_move_line")


def test_another_seed_gives_other_rows(seeded_pair: tuple[str, str], tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    seed(other, 1, seed=18)
    assert content_hash(other, "account_move_line") != content_hash(seeded_pair[0], "account_move_line")
    assert content_hash(other, "res_currency") == content_hash(seeded_pair[0], "res_currency")


def test_sqlite_and_postgres_hold_the_same_rows(seeded_pair: tuple[str, str]) -> None:
    lite_url, pg_url = seeded_pair
    with open_source(lite_url) as lite, open_source(pg_url) as pg:
        for table in TABLES:
            expected = pg.read_table(table.name)
            assert lite.read_table(table.name).cast(expected.schema).equals(expected), table.name


def test_every_move_is_balanced(seeded_url: str) -> None:
    # exact on PostgreSQL (numeric); on SQLite the check runs on the stored decimal strings
    if is_pg(seeded_url):
        bad = query(seeded_url, "SELECT move_id FROM account_move_line GROUP BY move_id "
                                "HAVING sum(debit) <> sum(credit) OR sum(balance) <> 0")
        assert bad == []
        assert query(seeded_url, "SELECT count(*) FROM account_move_line WHERE balance <> debit - credit "
                                 "OR (debit <> 0 AND credit <> 0) OR debit < 0 OR credit < 0") == [(0,)]
        return
    sums: dict[int, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for move_id, debit, credit, balance in query(seeded_url, "SELECT move_id, debit, credit, balance "
                                                              "FROM account_move_line"):
        assert isinstance(debit, str) and isinstance(balance, str)  # stored as decimal text, not floats
        d, c, b = Decimal(debit), Decimal(credit), Decimal(balance)
        assert b == d - c and min(d, c) == 0
        sums[move_id][0] += d
        sums[move_id][1] += c
    assert sums and all(d == c for d, c in sums.values())


def test_invoice_totals_match_their_lines(seeded_url: str) -> None:
    rows = query(seeded_url, """
        SELECT m.id, m.move_type, m.amount_total, m.amount_residual, l.amount_currency, l.amount_residual_currency
        FROM account_move m JOIN account_move_line l ON l.move_id = m.id AND l.display_type = 'payment_term'
        WHERE m.move_type IN ('out_invoice', 'out_refund', 'in_invoice', 'in_refund')""")
    assert len(rows) > 100
    for _, _, total, residual, term, term_residual in rows:
        assert Decimal(str(total)) == abs(Decimal(str(term)))
        assert Decimal(str(residual)) == abs(Decimal(str(term_residual)))
    paid = query(seeded_url, "SELECT amount_residual FROM account_move WHERE payment_state = 'paid' "
                             "AND move_type = 'out_invoice'")
    assert paid and all(Decimal(str(r[0])) == 0 for r in paid)
    partial = query(seeded_url, "SELECT amount_residual, amount_total FROM account_move "
                                "WHERE payment_state = 'partial'")
    assert partial and all(0 < Decimal(str(r)) < Decimal(str(t)) for r, t in partial)


def test_multi_company_and_multi_currency(seeded_url: str) -> None:
    companies = query(seeded_url, "SELECT c.id, cur.name FROM res_company c "
                                  "JOIN res_currency cur ON cur.id = c.currency_id ORDER BY c.id")
    assert [code for _, code in companies] == ["EUR", "USD"]
    per_company = query(seeded_url, "SELECT company_id, count(*) FROM account_move GROUP BY company_id")
    assert len(per_company) == 2
    foreign = query(seeded_url, "SELECT company_id, count(*) FROM account_move_line "
                                "WHERE currency_id <> company_currency_id GROUP BY company_id")
    assert len(foreign) == 2 and all(n > 10 for _, n in foreign)
    differs = query(seeded_url, "SELECT count(*) FROM account_move_line "
                                "WHERE currency_id <> company_currency_id AND amount_currency <> balance")
    assert differs[0][0] > 10
    assert query(seeded_url, "SELECT count(DISTINCT account_id) FROM account_move_line "
                             "WHERE company_id = 2 AND account_id <= 18") == [(0,)]  # accounts are per company


def test_states_types_and_credit_notes(seeded_url: str) -> None:
    states = {r[0] for r in query(seeded_url, "SELECT DISTINCT state FROM account_move")}
    assert states == {"draft", "posted", "cancel"}
    types = {r[0] for r in query(seeded_url, "SELECT DISTINCT move_type FROM account_move")}
    assert types == {"entry", "out_invoice", "out_refund", "in_invoice", "in_refund"}
    payment = {r[0] for r in query(seeded_url, "SELECT DISTINCT payment_state FROM account_move")}
    assert {"not_paid", "partial", "paid", "reversed"} <= payment
    refunds = query(seeded_url, "SELECT r.reversed_entry_id, o.move_type, o.payment_state FROM account_move r "
                                "JOIN account_move o ON o.id = r.reversed_entry_id WHERE r.move_type = 'out_refund'")
    assert refunds and all(t == "out_invoice" and p == "reversed" for _, t, p in refunds)
    assert query(seeded_url, "SELECT count(*) FROM account_move WHERE state = 'draft' AND name <> '/'") == [(0,)]
    orders = {r[0] for r in query(seeded_url, "SELECT DISTINCT state FROM sale_order")}
    assert orders == {"draft", "sent", "sale", "cancel"}


def test_translatable_names_are_json(seeded_url: str) -> None:
    for table in ("product_template", "account_account", "account_journal", "uom_uom"):
        rows = query(seeded_url, f"SELECT name FROM {table}")
        assert rows
        for (name,) in rows:
            value = name if isinstance(name, dict) else json.loads(name)
            assert set(value) == {"en_US", "fr_FR"} and value["en_US"]
    if is_pg(seeded_url):
        types = dict(query(seeded_url, "SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_name = 'product_template'"))
        assert types["name"] == "jsonb" and types["list_price"] == "numeric"


@pytest.mark.postgres
def test_postgres_column_types_follow_odoo(seeded_pair: tuple[str, str]) -> None:
    _, pg = seeded_pair
    rows = query(pg, "SELECT column_name, data_type, numeric_precision FROM information_schema.columns "
                     "WHERE table_name = 'account_move_line'")
    types = {name: (kind, precision) for name, kind, precision in rows}
    for money in ("debit", "credit", "balance", "amount_currency", "amount_residual", "price_unit"):
        assert types[money] == ("numeric", None)  # unconstrained, like Odoo's
    assert types["write_date"][0] == "timestamp without time zone"
    assert types["date"][0] == "date"
    assert types["move_id"][0] == "integer"
    assert types["analytic_distribution"][0] == "jsonb"


def test_sqlite_stores_money_as_decimal_text(seeded_pair: tuple[str, str]) -> None:
    lite, _ = seeded_pair
    kinds = query(lite, "SELECT DISTINCT typeof(debit), typeof(amount_total) FROM account_move_line "
                        "JOIN account_move ON account_move.id = move_id")
    assert kinds == [("text", "text")]
    assert query(lite, "SELECT count(*) FROM account_move_line WHERE debit LIKE '-%' OR debit LIKE '%e%'") == [(0,)]


def test_bad_urls() -> None:
    with pytest.raises(SourceUnavailable, match=r"cannot connect to postgresql://postgres@127\.0\.0\.1:1/x"):
        seed("postgresql://postgres@127.0.0.1:1/x", 1)
    with pytest.raises(SourceError, match=r"unsupported source URL scheme 'mysql'"):
        seed("mysql://localhost/odoo", 1)
    with pytest.raises(SeedError, match="scale"):
        seed("sqlite:///unused.db", 0)
