"""Business documents of the synthetic Odoo database, in date order: sale orders, customer invoices
and vendor bills (some in a foreign currency), their payments and credit notes, and miscellaneous
journal entries.

Documents are generated day by day from a year before the anchor date up to it; a document's date
follows the share of journal lines already written, so ``target_lines`` spreads evenly over the
year. Payments and credit notes are decided when their invoice is made (so its residual is known)
and emitted on their own later date from a queue, which keeps ids roughly in creation order.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lakehouse.connectors.odoo_master import CENT, Company, Emit, Master, Product
from lakehouse.connectors.odoo_moves import ZERO, Header, Line, MoveWriter

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Item:
    product: Product
    qty: Decimal
    price_unit: Decimal
    discount: Decimal
    subtotal: Decimal
    tax: Decimal
    tax_id: int


def _q(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


class Documents:
    def __init__(self, master: Master, rng: random.Random, emit: Emit, target_lines: int) -> None:
        self.m = master
        self.rng = rng
        self.emit = emit
        self.target = target_lines
        self.ids: dict[str, int] = {}
        self.moves = MoveWriter(master, emit, self.next_id)
        self.pending: list[tuple[date, int, str, dict[str, Any]]] = []
        self.pending_seq = 0
        self.reconcile_seq = 0
        self.so_seq = 0
        self.last_reversal: dict[str, Any] = {}

    def next_id(self, table: str) -> int:
        value = self.ids.get(table, 0) + 1
        self.ids[table] = value
        return value

    # --- the loop -------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> None:
        m, rng = self.m, self.rng
        span = (m.anchor - m.start).days
        reported = 0
        while self.moves.lines_written < self.target:
            day = m.start + timedelta(days=min(span - 1, span * self.moves.lines_written // self.target))
            self._flush(day)
            company = m.companies[0] if rng.random() < 0.65 else m.companies[1]
            r = rng.random()
            if r < 0.50:
                self._customer_invoice(company, day)
            elif r < 0.72:
                self._vendor_bill(company, day)
            elif r < 0.84:
                self._misc_entry(company, day)
            else:
                self._quotation(company, day)
            if progress and self.moves.lines_written - reported >= 2000:
                progress(self.moves.lines_written - reported)
                reported = self.moves.lines_written
        self._flush(m.anchor - timedelta(days=1))
        if progress:
            progress(self.moves.lines_written - reported)

    def _schedule(self, day: date, kind: str, payload: dict[str, Any]) -> bool:
        if day >= self.m.anchor:
            return False
        self.pending_seq += 1
        heapq.heappush(self.pending, (day, self.pending_seq, kind, payload))
        return True

    def _flush(self, up_to: date) -> None:
        while self.pending and self.pending[0][0] <= up_to:
            day, _, kind, payload = heapq.heappop(self.pending)
            if kind == "payment":
                self._payment(day, **payload)
            else:
                self._credit_note(day, **payload)

    # --- helpers --------------------------------------------------------------------------------

    def stamp(self, day: date, earliest: datetime | None = None) -> datetime:
        at = datetime(day.year, day.month, day.day) + timedelta(seconds=self.rng.randrange(7 * 3600, 19 * 3600))
        return max(at, earliest + timedelta(seconds=1)) if earliest else at

    def _currency(self, company: Company) -> int:
        r = self.rng.random()
        for currency_id, weight in company.foreign:
            if r < weight:
                return currency_id
            r -= weight
        return company.currency_id

    def _items(self, company: Company, use: str, count: int) -> list[Item]:
        rng, items = self.rng, []
        for _ in range(count):
            product = rng.choice(self.m.products)
            qty = Decimal(rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 20)))
            price = product.list_price if use == "sale" else _q(product.list_price * Decimal("0.6"))
            discount = Decimal(rng.choice((0, 0, 0, 0, 5, 10))) if use == "sale" else ZERO
            subtotal = _q(qty * price * (100 - discount) / 100)
            tax_id, rate, _ = self.m.taxes[(company.id, use, product.reduced_tax)]
            items.append(Item(product, qty, price, discount, subtotal, _q(subtotal * rate), tax_id))
        return items

    def _state(self, draft: float, cancel: float) -> str:
        r = self.rng.random()
        return "draft" if r < draft else "cancel" if r < draft + cancel else "posted"

    # --- documents ------------------------------------------------------------------------------

    def _customer_invoice(self, company: Company, day: date) -> None:
        rng = self.rng
        partner = rng.choice(self.m.customers)
        currency = self._currency(company)
        items = self._items(company, "sale", rng.choice((1, 1, 2, 2, 3, 3, 4, 5)))
        uid = rng.choice(self.m.salespeople)
        state = self._state(0.08, 0.04)
        origin = None
        if rng.random() < 0.55:
            origin = self._sale_order(company, day - timedelta(days=rng.randrange(0, 10)), partner, currency,
                                      items, uid, "sale", invoiced=state != "cancel", invoice_day=day)
        self._invoice(company, "out_invoice", day, partner, currency, items, state, uid, origin)

    def _vendor_bill(self, company: Company, day: date) -> None:
        rng = self.rng
        items = self._items(company, "purchase", rng.choice((1, 1, 2, 3)))
        ref = f"VB-{rng.randrange(10000, 99999)}"
        self._invoice(company, "in_invoice", day, rng.choice(self.m.vendors), self._currency(company), items,
                      self._state(0.10, 0.03), rng.choice(self.m.salespeople), None, ref)

    def _invoice(self, company: Company, move_type: str, day: date, partner: int, currency: int,
                 items: list[Item], state: str, uid: int, origin: str | None, ref: str | None = None) -> None:
        m, rng = self.m, self.rng
        out = move_type == "out_invoice"
        sign = Decimal(-1 if out else 1)  # sign of the product lines' balance
        rate = m.rate(company, currency, day)

        def conv(amount: Decimal) -> Decimal:
            return amount if rate == 1 else _q(amount / rate)

        lines: list[Line] = []
        taxes: dict[int, tuple[Decimal, Decimal]] = {}
        for it in items:
            role = ("income_service" if it.product.service else "income") if out else \
                ("expense_service" if it.product.service else "expense")
            ac = sign * it.subtotal
            analytic = '{"1": 100.0}' if not out and rng.random() < 0.2 else None
            lines.append(Line(m.accounts[(company.id, role)], it.product.display, ac, conv(ac),
                              product_id=it.product.id, uom_id=it.product.uom_id, quantity=it.qty,
                              price_unit=it.price_unit, discount=it.discount, price_subtotal=it.subtotal,
                              price_total=it.subtotal + it.tax, analytic=analytic))
            base, tax = taxes.get(it.tax_id, (ZERO, ZERO))
            taxes[it.tax_id] = (base + it.subtotal, tax + it.tax)
        for tax_id, (base, tax) in sorted(taxes.items()):
            label = m.tax_labels[tax_id]
            ac = sign * tax
            lines.append(Line(m.accounts[(company.id, "tax_due" if out else "tax_paid")], label, ac, conv(ac),
                              display_type="tax", tax_line_id=tax_id, tax_base_amount=conv(base)))
        term_ac = -sum((ln.amount_currency for ln in lines), ZERO)
        term_bal = -sum((ln.balance for ln in lines), ZERO)
        due = day + timedelta(days=rng.choice((0, 15, 30, 30, 45)))
        created = self.stamp(day)
        written = created + timedelta(minutes=rng.randrange(1, 120)) if state != "draft" else created
        term = Line(m.accounts[(company.id, "receivable" if out else "payable")], "", term_ac, term_bal,
                    display_type="payment_term", date_maturity=due)
        payment_state = "not_paid"
        if state == "posted":
            payment_state = self._settle(company, move_type, day, partner, currency, lines, term, rate)
        lines.append(term)
        header = Header(company, move_type, m.journals[(company.id, "sale" if out else "purchase")], day, state,
                        currency, partner, created, written, uid, ref=ref,
                        invoice_date_due=due, invoice_origin=origin, payment_state=payment_state,
                        narration="<p>Payment terms: see your contract.</p>" if out else None)
        origin_ref = self.moves.write(header, lines)
        if payment_state == "reversed":
            self.last_reversal["origin"] = origin_ref

    def _settle(self, company: Company, move_type: str, day: date, partner: int, currency: int,
                lines: list[Line], term: Line, rate: Decimal) -> str:
        """Decide the invoice's fate (paid, partial, reversed…), queue its payment or credit note."""
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            when = day + timedelta(days=rng.randrange(5, 40))
            matching = self._matching("A")
            reversal = {"company": company, "move_type": move_type, "partner": partner, "currency": currency,
                        "lines": [*lines, term], "origin": (0, ""), "matching": matching}
            if not self._schedule(when, "credit_note", reversal):
                return "not_paid"
            self.last_reversal = reversal  # _invoice fills in the origin once the move has its id
            term.residual, term.matching_number = (ZERO, ZERO), matching
            term.written = self.stamp(when)
            return "reversed"
        if r < 0.35:
            return "not_paid"
        when = day + timedelta(days=rng.randrange(2, 75))
        total_ac, total_bal = abs(term.amount_currency), abs(term.balance)
        partial = r < 0.45
        if partial:
            paid_ac = _q(total_ac * Decimal(rng.choice((20, 25, 40, 50, 60))) / 100)
            paid_bal = paid_ac if rate == 1 else _q(paid_ac / rate)
        else:
            paid_ac, paid_bal = total_ac, total_bal
        matching = self._matching("P" if partial else "A")
        payload = {"company": company, "partner": partner, "currency": currency, "amount": (paid_ac, paid_bal),
                   "inbound": move_type == "out_invoice", "matching": matching}
        if not self._schedule(when, "payment", payload):
            return "not_paid"
        sgn = 1 if term.amount_currency > 0 else -1
        term.residual = (term.balance - sgn * paid_bal, term.amount_currency - sgn * paid_ac)
        term.matching_number = matching
        term.written = self.stamp(when)
        if partial:
            return "partial"
        return "in_payment" if r > 0.90 else "paid"

    def _matching(self, prefix: str) -> str:
        self.reconcile_seq += 1
        return f"{prefix}{self.reconcile_seq}"

    def _payment(self, day: date, company: Company, partner: int, currency: int,
                 amount: tuple[Decimal, Decimal], inbound: bool, matching: str) -> None:
        m, rng = self.m, self.rng
        paid_ac, paid_bal = amount
        payment_id = self.next_id("account_payment")
        journal = m.journals[(company.id, "bank")]
        bank = m.accounts[(company.id, "bank")]
        counterpart = m.accounts[(company.id, "receivable" if inbound else "payable")]
        sgn = 1 if inbound else -1
        label = f"{'Customer' if inbound else 'Vendor'} Payment {m.currencies[currency]} {paid_ac} - " \
            f"{m.partner_names[partner]} - {day:%m/%d/%Y}"
        lines = [Line(bank, label, sgn * paid_ac, sgn * paid_bal),
                 Line(counterpart, label, -sgn * paid_ac, -sgn * paid_bal, display_type="payment_term",
                      residual=(ZERO, ZERO), matching_number=matching)]
        created = self.stamp(day)
        uid = rng.choice(m.salespeople)
        move_id, _ = self.moves.write(Header(company, "entry", journal, day, "posted", currency, partner,
                                             created, created, uid, payment_id=payment_id), lines,
                                      seq_kind="payment")
        self.emit("account_payment", {
            "id": payment_id, "move_id": move_id, "is_reconciled": True, "is_matched": False,
            "is_internal_transfer": False, "payment_method_line_id": 1 if inbound else 2, "amount": paid_ac,
            "payment_type": "inbound" if inbound else "outbound",
            "partner_type": "customer" if inbound else "supplier", "payment_reference": None,
            "currency_id": currency, "partner_id": partner, "destination_account_id": counterpart,
            "outstanding_account_id": bank, "create_uid": uid, "create_date": created, "write_uid": uid,
            "write_date": created})

    def _credit_note(self, day: date, company: Company, move_type: str, partner: int, currency: int,
                     lines: list[Line], origin: tuple[int, str], matching: str) -> None:
        refund_type = "out_refund" if move_type == "out_invoice" else "in_refund"
        reversed_lines = []
        for ln in lines:
            term = ln.display_type == "payment_term"
            reversed_lines.append(replace(
                ln, amount_currency=-ln.amount_currency, balance=-ln.balance, written=None,
                residual=(ZERO, ZERO) if term else None, matching_number=matching if term else None))
        created = self.stamp(day)
        role = "sale" if refund_type == "out_refund" else "purchase"
        self.moves.write(Header(company, refund_type, self.m.journals[(company.id, role)], day, "posted", currency,
                                partner, created, created, self.rng.choice(self.m.salespeople),
                                ref=f"Reversal of: {origin[1]}", invoice_date_due=day, payment_state="paid",
                                reversed_entry_id=origin[0]), reversed_lines)

    def _misc_entry(self, company: Company, day: date) -> None:
        m, rng = self.m, self.rng
        debit_role, credit_role, label = rng.choice((
            ("salaries", "salaries_due", "Salaries"), ("depreciation", "fixed_asset", "Depreciation"),
            ("bank", "income_other", "Interest received"), ("expense_service", "bank", "Bank fees")))
        parts = [_q(Decimal(rng.uniform(50, 8000))) for _ in range(rng.choice((1, 1, 2, 3)))]
        lines = [Line(m.accounts[(company.id, debit_role)], f"{label} {day:%m/%Y}", p, p) for p in parts]
        total = sum(parts, ZERO)
        lines.append(Line(m.accounts[(company.id, credit_role)], f"{label} {day:%m/%Y}", -total, -total))
        created = self.stamp(day)
        state = self._state(0.09, 0.03)
        written = created if state == "draft" else created + timedelta(minutes=rng.randrange(1, 600))
        self.moves.write(Header(company, "entry", m.journals[(company.id, "general")], day, state,
                                company.currency_id, None, created, written, rng.choice(m.salespeople),
                                ref=label), lines)

    def _quotation(self, company: Company, day: date) -> None:
        rng = self.rng
        items = self._items(company, "sale", rng.choice((1, 2, 3, 4)))
        state = rng.choices(("draft", "sent", "sale", "cancel"), (40, 30, 20, 10))[0]
        self._sale_order(company, day, rng.choice(self.m.customers), self._currency(company), items,
                         rng.choice(self.m.salespeople), state, invoiced=False, invoice_day=None)

    def _sale_order(self, company: Company, day: date, partner: int, currency: int, items: list[Item], uid: int,
                    state: str, invoiced: bool, invoice_day: date | None) -> str:
        rng = self.rng
        order_id = self.next_id("sale_order")
        self.so_seq += 1
        name = f"S{self.so_seq:05d}"
        ordered = self.stamp(day)
        written = self.stamp(invoice_day, ordered) if invoice_day else ordered + timedelta(
            minutes=rng.randrange(0, 3000))
        confirmed = state == "sale"
        status = "invoiced" if invoiced else "to invoice" if confirmed else "no"
        untaxed = sum((it.subtotal for it in items), ZERO)
        tax = sum((it.tax for it in items), ZERO)
        for seq, it in enumerate(items, start=10):
            total = it.subtotal + it.tax
            self.emit("sale_order_line", {
                "id": self.next_id("sale_order_line"), "order_id": order_id, "sequence": seq,
                "company_id": company.id, "currency_id": currency, "order_partner_id": partner,
                "salesman_id": uid, "state": state, "display_type": None, "is_downpayment": False,
                "is_expense": False, "product_id": it.product.id, "name": it.product.display,
                "product_uom_qty": it.qty, "product_uom": it.product.uom_id, "customer_lead": 0.0,
                "price_unit": it.price_unit, "discount": it.discount, "price_subtotal": it.subtotal,
                "price_tax": float(it.tax), "price_total": total,
                "price_reduce_taxexcl": _q(it.subtotal / it.qty), "price_reduce_taxinc": _q(total / it.qty),
                "qty_delivered_method": "manual", "qty_delivered": it.qty if confirmed else ZERO,
                "qty_invoiced": it.qty if invoiced else ZERO,
                "qty_to_invoice": it.qty if confirmed and not invoiced else ZERO,
                "untaxed_amount_invoiced": it.subtotal if invoiced else ZERO,
                "untaxed_amount_to_invoice": it.subtotal if confirmed and not invoiced else ZERO,
                "invoice_status": status, "create_uid": uid, "create_date": ordered, "write_uid": uid,
                "write_date": written})
        rate = self.m.rate(company, currency, day)
        self.emit("sale_order", {
            "id": order_id, "name": name, "state": state, "date_order": ordered,
            "validity_date": day + timedelta(days=30), "commitment_date": None,
            "client_order_ref": f"PO{rng.randrange(1000, 9999)}" if rng.random() < 0.3 else None,
            "origin": None, "reference": None, "require_signature": True, "require_payment": False,
            "prepayment_percent": 1.0, "partner_id": partner, "partner_invoice_id": partner,
            "partner_shipping_id": partner, "pricelist_id": None, "currency_id": currency,
            "currency_rate": rate, "user_id": uid, "team_id": None, "company_id": company.id,
            "payment_term_id": None, "fiscal_position_id": None, "note": None, "amount_untaxed": untaxed,
            "amount_tax": tax, "amount_total": untaxed + tax, "invoice_status": status, "locked": False,
            "signed_by": self.m.partner_names[partner] if confirmed else None, "create_uid": uid,
            "create_date": ordered, "write_uid": uid, "write_date": written})
        return name
