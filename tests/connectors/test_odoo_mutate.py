"""``mutate``: a deterministic batch of updates, inserts and deletes that keeps the books balanced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lakehouse.connectors import SourceError, mutate, seed
from tests.connectors.conftest import NOW, Mutated, new_url
from tests.connectors.dbutil import content_hash, is_pg, query


def test_mutate_changes_rows_and_keeps_moves_balanced(mutated: Mutated) -> None:
    fresh_url, changes = mutated.url, mutated.changes
    before = set(mutated.ids["account_move"])
    updated, inserted, deleted = changes["updated"], changes["inserted"], changes["deleted"]
    assert len(updated["account_move"]) == 2 and len(updated["res_partner"]) == 3
    assert len(updated["sale_order"]) == 2 and updated["sale_order_line"]
    assert len(inserted["account_move"]) == 2 and len(inserted["account_move_line"]) >= 4
    assert len(deleted["account_move"]) == 2 and deleted["account_move_line"]
    after = {r[0] for r in query(fresh_url, "SELECT id FROM account_move")}
    assert after == (before - set(deleted["account_move"])) | set(inserted["account_move"])
    assert min(inserted["account_move"]) > max(before)
    posted = query(fresh_url, "SELECT state, name FROM account_move WHERE id IN "
                              f"({', '.join(map(str, updated['account_move']))})")
    assert all(state == "posted" and name != "/" for state, name in posted)
    parent = query(fresh_url, "SELECT DISTINCT parent_state FROM account_move_line WHERE move_id IN "
                              f"({', '.join(map(str, updated['account_move']))})")
    assert parent == [("posted",)]
    names = query(fresh_url, "SELECT journal_id, name FROM account_move WHERE name <> '/'")
    assert len(names) == len(set(names))  # numbering continues per journal, never reuses a name
    sums = "sum(debit) <> sum(credit)" if is_pg(fresh_url) else "round(sum(debit) - sum(credit), 2) <> 0"
    assert query(fresh_url, f"SELECT move_id FROM account_move_line GROUP BY move_id HAVING {sums}") == []
    stamp = "2026-01-02 09:30:00.123456"
    changed = query(fresh_url, "SELECT count(*) FROM account_move_line WHERE write_date = "
                               + (f"'{stamp}'::timestamp" if is_pg(fresh_url) else f"'{stamp}'"))
    assert changed[0][0] == len(updated["account_move_line"]) + len(inserted["account_move_line"])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_mutate_is_deterministic(backend: str, tmp_path: Path, pg_factory: Callable[[], str]) -> None:
    first, second = new_url(backend, tmp_path, pg_factory), new_url(backend, tmp_path, pg_factory)
    seed(first, 1)
    seed(second, 1)
    assert mutate(first, 3, NOW) == mutate(second, 3, NOW)
    for table in ("account_move", "account_move_line", "res_partner", "sale_order"):
        assert content_hash(first, table) == content_hash(second, table)


def test_mutate_needs_a_seeded_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()
    with pytest.raises(SourceError, match="not a seeded Odoo database"):
        mutate(url, 1, NOW)
