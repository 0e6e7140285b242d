"""``mutate``: one deterministic batch of changes on a seeded Odoo database, for incremental tests.

What a day in Odoo looks like to an incremental reader: some rows updated (``write_date`` bumped),
some inserted, some deleted. Given the same database content, ``seed`` and ``now``, the same rows
change in the same way:

- two draft moves are posted (header and lines updated: name, state, ``parent_state``),
- three customers get a new phone number,
- two draft quotations are sent (order and lines updated),
- two new balanced miscellaneous entries are inserted (ids after the current maximum),
- two other draft moves are deleted with their lines.

Every updated or inserted row gets ``write_date = now`` (naive UTC, as Odoo stores it). The result
names the ids: ``{"updated": {table: [ids]}, "inserted": {…}, "deleted": {…}}``.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from lakehouse.connectors.errors import SourceError
from lakehouse.connectors.odoo_db import SeedDb, driver_errors
from lakehouse.connectors.odoo_master import ADMIN_UID, CENT, Company, Master
from lakehouse.connectors.odoo_moves import INVOICE_TYPES, ZERO, Header, Line, MoveWriter
from lakehouse.connectors.odoo_schema import BY_NAME
from lakehouse.connectors.urls import parse_url

Changes = dict[str, dict[str, list[int]]]


def _day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def mutate(url: str, seed: int, now: datetime) -> Changes:
    """Apply the change batch to the Odoo tables at ``url``; return the ids that changed."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    rng = random.Random(seed)
    changes: Changes = {"updated": {}, "inserted": {}, "deleted": {}}
    parsed = parse_url(url)
    with driver_errors(parsed.display), SeedDb(parsed) as db:
        missing = sorted(set(BY_NAME) - set(db.existing_tables(BY_NAME)))
        if missing:
            raise SourceError(f"{db.url.display} is not a seeded Odoo database (missing {', '.join(missing[:3])})")
        writer = _writer(db, changes)
        drafts = db.execute("SELECT id, move_type, journal_id, date FROM account_move WHERE state = 'draft' "
                            "ORDER BY id")
        picked = rng.sample(drafts, min(4, len(drafts)))
        for move_id, move_type, journal_id, day in sorted(picked[:2]):
            _post(db, writer, changes, move_id, move_type, journal_id, _day(day), now)
        _touch_partners(db, rng, changes, now)
        _send_quotations(db, rng, changes, now)
        for _ in range(2):
            _insert_entry(db, rng, writer, changes, now)
        doomed = sorted(r[0] for r in picked[2:])
        if doomed:
            marks = ", ".join("?" for _ in doomed)
            lines = db.execute(f"SELECT id FROM account_move_line WHERE move_id IN ({marks}) ORDER BY id", doomed)
            db.execute(f"DELETE FROM account_move_line WHERE move_id IN ({marks})", doomed)
            db.execute(f"DELETE FROM account_move WHERE id IN ({marks})", doomed)
            changes["deleted"] = {"account_move": doomed, "account_move_line": [r[0] for r in lines]}
        for table in ("account_move", "account_move_line"):
            db.sync_sequence(table)
        db.commit()
    for kind in changes.values():
        for table in kind:
            kind[table] = sorted(kind[table])
    return changes


def _writer(db: SeedDb, changes: Changes) -> MoveWriter:
    master = Master(anchor=date.max, start=date.min)
    master.account_types = {r[0]: r[1] for r in db.execute("SELECT id, account_type FROM account_account")}
    last = {t: db.execute(f'SELECT COALESCE(max(id), 0) FROM "{t}"')[0][0]
            for t in ("account_move", "account_move_line")}

    def next_id(table: str) -> int:
        last[table] += 1
        return int(last[table])

    def emit(table: str, row: dict[str, Any]) -> None:
        db.insert(BY_NAME[table], row)
        changes["inserted"].setdefault(table, []).append(row["id"])

    return MoveWriter(master, emit, next_id)


def _sync_sequence(db: SeedDb, writer: MoveWriter, journal_id: int, kind: str, day: date) -> None:
    """Continue the journal's numbering from the highest number already in the database."""
    prefix = writer.prefix(kind, day)
    if (journal_id, prefix) not in writer.sequences:
        current = db.execute("SELECT COALESCE(max(sequence_number), 0) FROM account_move "
                             "WHERE journal_id = ? AND sequence_prefix = ?", [journal_id, prefix])[0][0]
        writer.sequences[(journal_id, prefix)] = int(current)


def _post(db: SeedDb, writer: MoveWriter, changes: Changes, move_id: int, move_type: str, journal_id: int,
          day: date, now: datetime) -> None:
    _sync_sequence(db, writer, journal_id, move_type, day)
    name, prefix, number = writer.sequence(journal_id, move_type, day)
    reference = name if move_type in INVOICE_TYPES else None
    db.execute("UPDATE account_move SET state = 'posted', name = ?, sequence_prefix = ?, sequence_number = ?, "
               "posted_before = ?, payment_reference = ?, write_uid = ?, write_date = ? WHERE id = ?",
               [name, prefix, number, True, reference, ADMIN_UID, now, move_id])
    lines = [r[0] for r in db.execute("SELECT id FROM account_move_line WHERE move_id = ?", [move_id])]
    db.execute("UPDATE account_move_line SET parent_state = 'posted', move_name = ?, write_uid = ?, "
               "write_date = ? WHERE move_id = ?", [name, ADMIN_UID, now, move_id])
    changes["updated"].setdefault("account_move", []).append(move_id)
    changes["updated"].setdefault("account_move_line", []).extend(lines)


def _touch_partners(db: SeedDb, rng: random.Random, changes: Changes, now: datetime) -> None:
    customers = [r[0] for r in db.execute("SELECT id FROM res_partner WHERE customer_rank > 0 ORDER BY id")]
    for partner_id in sorted(rng.sample(customers, min(3, len(customers)))):
        phone = f"+32 {rng.randrange(100, 999)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}"
        db.execute("UPDATE res_partner SET phone = ?, write_uid = ?, write_date = ? WHERE id = ?",
                   [phone, ADMIN_UID, now, partner_id])
        changes["updated"].setdefault("res_partner", []).append(partner_id)


def _send_quotations(db: SeedDb, rng: random.Random, changes: Changes, now: datetime) -> None:
    drafts = [r[0] for r in db.execute("SELECT id FROM sale_order WHERE state = 'draft' ORDER BY id")]
    for order_id in sorted(rng.sample(drafts, min(2, len(drafts)))):
        db.execute("UPDATE sale_order SET state = 'sent', write_uid = ?, write_date = ? WHERE id = ?",
                   [ADMIN_UID, now, order_id])
        lines = [r[0] for r in db.execute("SELECT id FROM sale_order_line WHERE order_id = ?", [order_id])]
        db.execute("UPDATE sale_order_line SET state = 'sent', write_uid = ?, write_date = ? WHERE order_id = ?",
                   [ADMIN_UID, now, order_id])
        changes["updated"].setdefault("sale_order", []).append(order_id)
        changes["updated"].setdefault("sale_order_line", []).extend(lines)


def _insert_entry(db: SeedDb, rng: random.Random, writer: MoveWriter, changes: Changes, now: datetime) -> None:
    companies = db.execute("SELECT id, name, partner_id, currency_id FROM res_company ORDER BY id")
    cid, cname, partner_id, currency_id = rng.choice(companies)
    company = Company(cid, cname, partner_id, currency_id, 0, ())
    journal = db.execute("SELECT id, code FROM account_journal WHERE company_id = ? AND type = 'general' "
                         "ORDER BY id LIMIT 1", [cid])[0]

    def account(account_type: str) -> int:
        return int(db.execute("SELECT id FROM account_account WHERE company_id = ? AND account_type = ? "
                              "ORDER BY id LIMIT 1", [cid, account_type])[0][0])

    label = f"Accrual {now:%m/%Y}"
    parts = [Decimal(rng.randrange(1000, 500000)) * CENT for _ in range(rng.choice((1, 2)))]
    total = sum(parts, ZERO)
    lines = [Line(account("expense"), label, p, p) for p in parts]
    lines.append(Line(account("liability_current"), label, -total, -total))
    _sync_sequence(db, writer, journal[0], "entry", now.date())
    writer.write(Header(company, "entry", (journal[0], journal[1]), now.date(), "posted", currency_id, None, now,
                        now, ADMIN_UID, ref=label), lines)
