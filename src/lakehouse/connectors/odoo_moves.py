"""Journal entries as Odoo 17 stores them: one ``account_move`` header and its ``account_move_line`` rows.

``MoveWriter.write`` takes line specs (account, amount in document currency, balance in company
currency, …) and derives what Odoo's ORM would compute and store: debit/credit from the balance,
residuals on reconcilable and cash accounts, the header amounts (``amount_*`` and ``amount_*_signed``
with Odoo's sign conventions) and the denormalised line columns (``move_name``, ``parent_state``,
``date``, ``journal_id``, …). Balanced by construction: callers make the last line the negated sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lakehouse.connectors.odoo_master import Company, Emit, Master

ZERO = Decimal("0.00")
INVOICE_TYPES = ("out_invoice", "out_refund", "in_invoice", "in_refund")
# journal role and name format per move type: (prefix template, digits, monthly)
SEQUENCES = {
    "out_invoice": ("INV", 5, False), "out_refund": ("RINV", 5, False),
    "in_invoice": ("BILL", 4, True), "in_refund": ("RBILL", 4, True),
    "entry": ("MISC", 4, True), "payment": ("PBNK1", 5, False),
}


def direction_sign(move_type: str) -> int:
    """Odoo's ``direction_sign``: +1 for entries and outbound documents (bills, credit notes)."""
    return 1 if move_type in ("entry", "in_invoice", "out_refund") else -1


@dataclass
class Line:
    account_id: int
    name: str | None
    amount_currency: Decimal
    balance: Decimal
    display_type: str = "product"
    product_id: int | None = None
    uom_id: int | None = None
    quantity: Decimal | None = None
    price_unit: Decimal | None = None
    discount: Decimal | None = None
    price_subtotal: Decimal | None = None
    price_total: Decimal | None = None
    tax_line_id: int | None = None
    tax_base_amount: Decimal | None = None
    residual: tuple[Decimal, Decimal] | None = None  # (company currency, document currency)
    matching_number: str | None = None
    date_maturity: date | None = None
    analytic: str | None = None
    written: datetime | None = None  # a later write (reconciliation) than the move's


@dataclass
class Header:
    company: Company
    move_type: str
    journal: tuple[int, str]
    day: date
    state: str
    currency_id: int
    partner_id: int | None
    created: datetime
    written: datetime
    uid: int
    ref: str | None = None
    invoice_date_due: date | None = None
    invoice_origin: str | None = None
    payment_state: str = "not_paid"
    reversed_entry_id: int | None = None
    payment_id: int | None = None
    narration: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MoveWriter:
    """Allocates ids and sequence numbers and emits moves with their lines."""

    def __init__(self, master: Master, emit: Emit, next_id: Callable[[str], int]) -> None:
        self.m = master
        self.emit = emit
        self.next_id = next_id
        self.sequences: dict[tuple[int, str], int] = {}
        self.lines_written = 0

    @staticmethod
    def prefix(kind: str, day: date) -> str:
        """``sequence_prefix`` of a move of ``kind`` (a move type or "payment") dated ``day``."""
        code, _, monthly = SEQUENCES[kind]
        return f"{code}/{day.year}/{day.month:02d}/" if monthly else f"{code}/{day.year}/"

    def sequence(self, journal_id: int, kind: str, day: date) -> tuple[str, str, int]:
        """(name, sequence_prefix, sequence_number) of the next number in that journal."""
        prefix = self.prefix(kind, day)
        number = self.sequences.get((journal_id, prefix), 0) + 1
        self.sequences[(journal_id, prefix)] = number
        return f"{prefix}{number:0{SEQUENCES[kind][1]}d}", prefix, number

    def write(self, h: Header, lines: list[Line], seq_kind: str | None = None) -> tuple[int, str]:
        """Emit the move and its lines; return its id and name."""
        move_id = self.next_id("account_move")
        if h.state == "draft":
            name, prefix, number = "/", None, None
        else:
            name, prefix, number = self.sequence(h.journal[0], seq_kind or h.move_type, h.day)
        is_invoice = h.move_type in INVOICE_TYPES
        partner_name = self.m.partner_names.get(h.partner_id) if h.partner_id else None
        base = {
            "move_id": move_id, "journal_id": h.journal[0], "company_id": h.company.id,
            "company_currency_id": h.company.currency_id, "move_name": name, "parent_state": h.state,
            "date": h.day, "invoice_date": h.day if is_invoice else None, "ref": h.ref, "is_storno": False,
            "currency_id": h.currency_id, "partner_id": h.partner_id, "reconcile_model_id": None,
            "payment_id": h.payment_id, "statement_line_id": None, "statement_id": None,
            "tax_group_id": None, "tax_repartition_line_id": None, "full_reconcile_id": None,
            "blocked": False, "tax_line_id": None,
            "tax_tag_invert": h.move_type in ("out_invoice", "in_refund"),
            "create_uid": h.uid, "create_date": h.created, "write_uid": h.uid,
        }
        untaxed = tax = total = residual = ZERO  # company currency
        untaxed_c = tax_c = total_c = residual_c = ZERO  # document currency
        written = h.written
        for seq, ln in enumerate(lines, start=10):
            bal = ln.balance
            account_type = self.m.account_types[ln.account_id]
            if ln.residual is not None:
                res, res_c = ln.residual
            elif account_type in ("asset_receivable", "liability_payable", "asset_cash"):
                res, res_c = bal, ln.amount_currency
            else:
                res, res_c = ZERO, ZERO
            line_written = max(h.written, ln.written) if ln.written else h.written
            written = max(written, line_written)
            row = base.copy()
            row.update({
                "id": self.next_id("account_move_line"), "sequence": seq, "account_id": ln.account_id,
                "name": ln.name, "debit": bal if bal > 0 else ZERO, "credit": -bal if bal < 0 else ZERO,
                "balance": bal, "amount_currency": ln.amount_currency, "tax_line_id": ln.tax_line_id,
                "tax_base_amount": ln.tax_base_amount, "amount_residual": res,
                "amount_residual_currency": res_c,
                "reconciled": account_type in ("asset_receivable", "liability_payable")
                and res == 0 and res_c == 0,
                "matching_number": ln.matching_number, "display_type": ln.display_type,
                "product_id": ln.product_id, "product_uom_id": ln.uom_id, "quantity": ln.quantity,
                "date_maturity": ln.date_maturity, "price_unit": ln.price_unit, "discount": ln.discount,
                "price_subtotal": ln.price_subtotal, "price_total": ln.price_total,
                "analytic_distribution": ln.analytic, "write_date": line_written,
            })
            self.emit("account_move_line", row)
            if is_invoice:
                if ln.display_type == "tax":
                    tax += bal
                    tax_c += ln.amount_currency
                elif ln.display_type == "product":
                    untaxed += bal
                    untaxed_c += ln.amount_currency
                elif ln.display_type == "payment_term":
                    residual += res
                    residual_c += res_c
            elif bal > 0:
                total += bal
                total_c += ln.amount_currency
        self.lines_written += len(lines)
        sign = direction_sign(h.move_type)
        if is_invoice:
            total, total_c = untaxed + tax, untaxed_c + tax_c
            amounts = {
                "amount_untaxed": sign * untaxed_c, "amount_tax": sign * tax_c, "amount_total": sign * total_c,
                "amount_residual": -sign * residual_c, "amount_untaxed_signed": -untaxed,
                "amount_tax_signed": -tax, "amount_total_signed": -total,
                "amount_total_in_currency_signed": -total_c,
                "amount_residual_signed": residual}
        else:
            amounts = {
                "amount_untaxed": ZERO, "amount_tax": ZERO, "amount_total": total_c, "amount_residual": ZERO,
                "amount_untaxed_signed": ZERO, "amount_tax_signed": ZERO, "amount_total_signed": abs(total),
                "amount_total_in_currency_signed": abs(total_c), "amount_residual_signed": ZERO}
        self.emit("account_move", {
            "id": move_id, "name": name, "ref": h.ref, "date": h.day, "state": h.state,
            "move_type": h.move_type, "journal_id": h.journal[0], "company_id": h.company.id,
            "currency_id": h.currency_id, "partner_id": h.partner_id, "commercial_partner_id": h.partner_id,
            "partner_shipping_id": h.partner_id if h.move_type.startswith("out_") else None,
            "payment_reference": name if is_invoice and name != "/" else None,
            "invoice_date": h.day if is_invoice else None, "invoice_date_due": h.invoice_date_due,
            "invoice_origin": h.invoice_origin, "invoice_payment_term_id": None,
            "invoice_user_id": h.uid if is_invoice else None, "fiscal_position_id": None,
            "narration": h.narration, "payment_state": h.payment_state, **amounts,
            "reversed_entry_id": h.reversed_entry_id, "payment_id": h.payment_id, "statement_line_id": None,
            "sequence_prefix": prefix, "sequence_number": number, "auto_post": "no", "to_check": False,
            "posted_before": h.state != "draft", "is_move_sent": is_invoice and h.state == "posted",
            "is_storno": False, "always_tax_exigible": not is_invoice,
            "invoice_partner_display_name": partner_name if is_invoice else None,
            "create_uid": h.uid, "create_date": h.created, "write_uid": h.uid, "write_date": written,
            **h.extra})
        return move_id, name
