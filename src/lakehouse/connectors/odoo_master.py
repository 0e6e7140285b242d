"""Master data of the synthetic Odoo database: currencies, companies, partners, products, chart of
accounts, journals, taxes and currency rates.

Everything is drawn from the ``random.Random`` passed in, in a fixed order, so the same seed and scale
give the same rows. Rows are dicts keyed by column name and handed to ``emit(table, row)``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

Emit = Callable[[str, dict[str, Any]], None]

CENT = Decimal("0.01")
RATE_Q = Decimal("0.000001")
ROOT_UID = 1
ADMIN_UID = 2


def tr(en: str, fr: str) -> str:
    """A translatable value as Odoo 17 stores it (jsonb; PostgreSQL's own text form and key order)."""
    return json.dumps({"en_US": en, "fr_FR": fr}, ensure_ascii=False)


def audit(created: datetime, uid: int = ADMIN_UID, written: datetime | None = None,
          wuid: int | None = None) -> dict[str, Any]:
    return {"create_uid": uid, "create_date": created, "write_uid": wuid or uid,
            "write_date": written or created}


@dataclass(frozen=True)
class Company:
    id: int
    name: str
    partner_id: int
    currency_id: int
    country_id: int
    foreign: tuple[tuple[int, float], ...]  # (currency_id, weight) of foreign-currency documents


@dataclass(frozen=True)
class Product:
    id: int
    tmpl_id: int
    display: str
    list_price: Decimal
    service: bool
    uom_id: int
    reduced_tax: bool


@dataclass
class Master:
    anchor: date
    start: date
    companies: list[Company] = field(default_factory=list)
    currencies: dict[int, str] = field(default_factory=dict)
    rates: dict[tuple[int, int, int, int], Decimal] = field(default_factory=dict)  # company, cur, y, m
    accounts: dict[tuple[int, str], int] = field(default_factory=dict)  # (company, role) -> id
    account_types: dict[int, str] = field(default_factory=dict)
    journals: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)  # -> (id, code)
    taxes: dict[tuple[int, str, bool], tuple[int, Decimal, str]] = field(default_factory=dict)
    tax_labels: dict[int, str] = field(default_factory=dict)
    customers: list[int] = field(default_factory=list)
    vendors: list[int] = field(default_factory=list)
    partner_names: dict[int, str] = field(default_factory=dict)
    products: list[Product] = field(default_factory=list)
    salespeople: list[int] = field(default_factory=list)

    def rate(self, company: Company, currency_id: int, day: date) -> Decimal:
        """Units of ``currency_id`` for one unit of the company currency (Odoo's convention)."""
        if currency_id == company.currency_id:
            return Decimal(1)
        month = day.year * 12 + day.month - 1
        for back in range(36):  # the latest rate at or before the day, like Odoo
            rate = self.rates.get((company.id, currency_id, (month - back) // 12, (month - back) % 12 + 1))
            if rate is not None:
                return rate
        raise KeyError(f"no {self.currencies[currency_id]} rate for company {company.id} before {day}")


CURRENCIES = (  # id, code, full name, symbol, position, unit, subunit
    (1, "EUR", "Euro", "€", "after", ("Euros", "Euros"), ("Cents", "Centimes")),
    (2, "USD", "United States dollar", "$", "before", ("Dollars", "Dollars"), ("Cents", "Cents")),
    (3, "GBP", "British pound", "£", "before", ("Pounds", "Livres"), ("Pence", "Pence")),
    (4, "CHF", "Swiss franc", "CHF", "after", ("Francs", "Francs"), ("Centimes", "Centimes")),
)
COUNTRIES = (  # id, code, en, fr, currency, phone
    (1, "BE", "Belgium", "Belgique", 1, 32), (2, "US", "United States", "États-Unis", 2, 1),
    (3, "FR", "France", "France", 1, 33), (4, "DE", "Germany", "Allemagne", 1, 49),
    (5, "GB", "United Kingdom", "Royaume-Uni", 3, 44), (6, "NL", "Netherlands", "Pays-Bas", 1, 31),
    (7, "CH", "Switzerland", "Suisse", 4, 41),
)
CITIES = {1: ("Brussels", "Liège", "Ghent", "Namur"), 2: ("New York", "Austin", "Denver", "Boston"),
          3: ("Paris", "Lyon", "Lille"), 4: ("Berlin", "Munich"), 5: ("London", "Leeds"),
          6: ("Amsterdam", "Utrecht"), 7: ("Geneva", "Zurich")}
BASE_RATES = {1: {2: 1.09, 3: 0.855, 4: 0.955}, 2: {1: 0.917, 3: 0.785, 4: 0.876}}

# role, (code BE, code US), account_type, reconcile, en, fr
CHART = (
    ("receivable", ("400000", "121000"), "asset_receivable", True, "Account Receivable", "Clients"),
    ("payable", ("440000", "211000"), "liability_payable", True, "Account Payable", "Fournisseurs"),
    ("tax_due", ("451000", "252000"), "liability_current", False, "Tax Payable", "TVA à payer"),
    ("tax_paid", ("411000", "131000"), "asset_current", False, "Tax Receivable", "TVA à récupérer"),
    ("income", ("700000", "400000"), "income", False, "Product Sales", "Ventes"),
    ("income_service", ("705000", "410000"), "income", False, "Service Revenue", "Prestations"),
    ("income_other", ("740000", "440000"), "income_other", False, "Other Income", "Autres produits"),
    ("expense", ("600000", "500000"), "expense_direct_cost", False, "Cost of Goods Sold", "Achats"),
    ("expense_service", ("610000", "600000"), "expense", False, "Services and Goods",
     "Services et biens divers"),
    ("salaries", ("620000", "620000"), "expense", False, "Salaries", "Rémunérations"),
    ("depreciation", ("630000", "630000"), "expense_depreciation", False, "Depreciation",
     "Amortissements"),
    ("salaries_due", ("455000", "230000"), "liability_current", False, "Salaries Payable",
     "Rémunérations dues"),
    ("fixed_asset", ("240000", "151000"), "asset_fixed", False, "Equipment", "Mobilier et matériel"),
    ("bank", ("550000", "101401"), "asset_cash", False, "Bank", "Banque"),
    ("cash", ("570000", "101501"), "asset_cash", False, "Cash", "Caisse"),
    ("suspense", ("499000", "101402"), "asset_current", False, "Bank Suspense Account",
     "Compte d'attente bancaire"),
    ("capital", ("100000", "300000"), "equity", False, "Capital", "Capital"),
    ("unaffected", ("999999", "999999"), "equity_unaffected", False, "Undistributed Profits/Losses",
     "Résultats non affectés"),
)
JOURNALS = (  # role, code, type, en, fr, default account role
    ("sale", "INV", "sale", "Customer Invoices", "Factures clients", "income"),
    ("purchase", "BILL", "purchase", "Vendor Bills", "Factures fournisseurs", "expense"),
    ("general", "MISC", "general", "Miscellaneous Operations", "Opérations diverses", None),
    ("bank", "BNK1", "bank", "Bank", "Banque", "bank"),
    ("cash", "CSH1", "cash", "Cash", "Espèces", "cash"),
)
FIRST = ("Anna", "Bruno", "Chloé", "David", "Elena", "Farid", "Greta", "Hugo", "Inès", "Jonas", "Kaya",
         "Lucas", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
         "Wout", "Xena", "Yann", "Zoé")
LAST = ("Peeters", "Janssens", "Maes", "Dubois", "Lambert", "Martin", "Smith", "Johnson", "Garcia",
        "Müller", "Schmidt", "Dupont", "Leroy", "Clark", "Lewis", "Walker", "Hall", "Young", "Moreau",
        "Fontaine", "Baker", "Nelson", "Evans", "Wright")
FIRM_A = ("Atlas", "Blue", "Cedar", "Delta", "Echo", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
          "Kestrel", "Lumen", "Maple", "Nimbus", "Orbit", "Pioneer", "Quartz", "River", "Summit", "Tidal")
FIRM_B = ("Logistics", "Foods", "Systems", "Design", "Partners", "Labs", "Retail", "Consulting",
          "Builders", "Energy", "Media", "Outdoor", "Health", "Robotics")
FIRM_C = ("SA", "SRL", "BV", "GmbH", "Ltd", "Inc.", "LLC", "SAS")
NOUNS = (("Desk", "Bureau"), ("Chair", "Chaise"), ("Lamp", "Lampe"), ("Cable", "Câble"),
         ("Monitor", "Écran"), ("Keyboard", "Clavier"), ("Shelf", "Étagère"), ("Cabinet", "Armoire"),
         ("Router", "Routeur"), ("Headset", "Casque"), ("Printer", "Imprimante"), ("Table", "Table"),
         ("Drawer", "Tiroir"), ("Whiteboard", "Tableau blanc"), ("Speaker", "Enceinte"))
ADJECTIVES = (("Ergonomic", "ergonomique"), ("Compact", "compact"), ("Large", "grand"),
              ("Wireless", "sans fil"), ("Premium", "premium"), ("Recycled", "recyclé"),
              ("Standing", "debout"), ("Modular", "modulaire"), ("Acoustic", "acoustique"))
SERVICES = (("Installation", "Installation"), ("Consulting Hour", "Heure de conseil"),
            ("Maintenance Plan", "Contrat de maintenance"), ("Training Day", "Journée de formation"),
            ("Support Ticket", "Ticket de support"), ("Audit", "Audit"))


def money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(str(round(rng.uniform(low, high), 2))).quantize(CENT)


def build_master(rng: random.Random, scale: int, anchor: date, emit: Emit) -> Master:
    """Emit the master data rows and return the lookups the documents need."""
    start = anchor - timedelta(days=365)
    m = Master(anchor=anchor, start=start)
    epoch = datetime(start.year, start.month, start.day) - timedelta(days=30)
    _currencies(m, emit, epoch)
    _countries(emit, epoch)
    _companies_users(m, emit, epoch)
    _rates(m, rng, emit, epoch)
    _partners(m, rng, scale, emit, epoch)
    _catalog(m, rng, scale, emit, epoch)
    _accounting(m, emit, epoch)
    return m


def _currencies(m: Master, emit: Emit, at: datetime) -> None:
    for cid, code, full, symbol, position, unit, sub in CURRENCIES:
        m.currencies[cid] = code
        emit("res_currency", {
            "id": cid, "name": code, "full_name": full, "symbol": symbol, "rounding": CENT,
            "decimal_places": 2, "active": True, "position": position,
            "currency_unit_label": tr(*unit), "currency_subunit_label": tr(*sub), **audit(at, ROOT_UID)})


def _countries(emit: Emit, at: datetime) -> None:
    for cid, code, en, fr, currency, phone in COUNTRIES:
        emit("res_country", {"id": cid, "name": tr(en, fr), "code": code, "currency_id": currency,
                             "phone_code": phone, **audit(at, ROOT_UID)})


def _companies_users(m: Master, emit: Emit, at: datetime) -> None:
    m.companies = [
        Company(1, "Lakehouse Demo SA", 1, 1, 1, ((2, 0.15), (3, 0.05))),
        Company(2, "Lakehouse Demo Inc.", 4, 2, 2, ((1, 0.15), (4, 0.05))),
    ]
    for pid, name, is_company, country in ((1, m.companies[0].name, True, 1), (2, "OdooBot", False, 1),
                                           (3, "Mitchell Admin", False, 1), (4, m.companies[1].name, True, 2),
                                           (5, "Marc Demo", False, 1), (6, "Joel Willis", False, 2)):
        m.partner_names[pid] = name
        email = f"{name.lower().replace(' ', '.')}@example.com"
        emit("res_partner", _partner_row(pid, name, is_company, country, None, at, email=email,
                                         partner_share=False))
    for company in m.companies:
        emit("res_company", {
            "id": company.id, "name": company.name, "partner_id": company.partner_id,
            "currency_id": company.currency_id, "sequence": company.id * 10, "parent_id": None,
            "active": True, "email": f"info@company{company.id}.example.com",
            "phone": "+32 2 290 34 90" if company.id == 1 else "+1 555-555-5556",
            "company_registry": f"0477.47{company.id}.701", "account_fiscal_country_id": company.country_id,
            "fiscalyear_last_day": 31, "fiscalyear_last_month": "12",
            "anglo_saxon_accounting": company.id == 2, **audit(at, ROOT_UID)})
    for uid, login, pid, company_id in ((1, "__system__", 2, 1), (2, "admin", 3, 1), (3, "demo", 5, 1),
                                        (4, "joel", 6, 2)):
        emit("res_users", {"id": uid, "login": login, "partner_id": pid, "company_id": company_id,
                           "active": uid != 1, "share": False, "notification_type": "email",
                           **audit(at, ROOT_UID)})
    m.salespeople = [2, 3, 4]


def _rates(m: Master, rng: random.Random, emit: Emit, at: datetime) -> None:
    rid = 0
    first = m.start.year * 12 + m.start.month - 1 - 2  # two months before the data, through the anchor's
    months = [((first + k) // 12, (first + k) % 12 + 1) for k in range(16)]
    for company in m.companies:
        for currency_id, base in BASE_RATES[company.id].items():
            level = base
            for year, month in months:
                level *= 1 + rng.uniform(-0.02, 0.02)
                rate = Decimal(str(round(level, 6))).quantize(RATE_Q)
                m.rates[(company.id, currency_id, year, month)] = rate
                rid += 1
                emit("res_currency_rate", {"id": rid, "name": date(year, month, 1), "rate": rate,
                                           "currency_id": currency_id, "company_id": company.id,
                                           **audit(at)})


def _partner_row(pid: int, name: str, is_company: bool, country: int, parent: int | None, at: datetime,
                 **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": pid, "name": name, "complete_name": name, "company_id": None, "type": "contact",
        "parent_id": parent, "commercial_partner_id": parent or pid, "ref": None,
        "lang": "fr_FR" if country in (1, 3) else "en_US", "tz": "Europe/Brussels" if country != 2
        else "America/New_York", "vat": None, "street": None, "street2": None, "zip": None, "city": None,
        "country_id": country, "email": None, "phone": None, "mobile": None, "website": None,
        "is_company": is_company, "active": True, "employee": False, "function": None, "color": 0,
        "partner_share": True, "commercial_company_name": name if is_company else None,
        "company_registry": None, "customer_rank": 0, "supplier_rank": 0, "user_id": None,
        "comment": None, **audit(at)}
    row.update(extra)
    return row


def _partners(m: Master, rng: random.Random, scale: int, emit: Emit, at: datetime) -> None:
    pid = 6
    count = 25 * scale + 5
    for k in range(count):
        pid += 1
        created = at + timedelta(minutes=7 * k)
        country = rng.choices((1, 2, 3, 4, 5, 6, 7), (30, 30, 10, 8, 8, 8, 6))[0]
        city = rng.choice(CITIES[country])
        if rng.random() < 0.7:
            name = f"{rng.choice(FIRM_A)} {rng.choice(FIRM_B)} {rng.choice(FIRM_C)}"
            is_company = True
        else:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            is_company = False
        customer = rng.random() < 0.75
        vendor = not customer or rng.random() < 0.2
        slug = name.lower().replace(" ", "").replace(".", "")[:20]
        row = _partner_row(
            pid, name, is_company, country, None, created, ref=f"P{pid:05d}",
            vat=f"{COUNTRIES[country - 1][1]}{rng.randrange(10**9, 10**10)}" if is_company else None,
            street=f"{rng.randrange(1, 300)} {rng.choice(LAST)} Street", zip=f"{rng.randrange(1000, 99999)}",
            city=city, email=f"contact{pid}@{slug}.example.com", phone=f"+{rng.randrange(1, 50)} "
            f"{rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
            website=f"https://{slug}.example.com" if is_company else None,
            customer_rank=rng.randrange(1, 20) if customer else 0,
            supplier_rank=rng.randrange(1, 10) if vendor else 0,
            user_id=rng.choice(m.salespeople) if customer else None)
        emit("res_partner", row)
        m.partner_names[pid] = name
        if customer:
            m.customers.append(pid)
        if vendor:
            m.vendors.append(pid)


def _catalog(m: Master, rng: random.Random, scale: int, emit: Emit, at: datetime) -> None:
    for uid, en, fr, cat, factor, kind in ((1, "Units", "Unité(s)", 1, "1", "reference"),
                                           (2, "Dozens", "Douzaine(s)", 1, "0.0833333333", "bigger"),
                                           (3, "kg", "kg", 2, "1", "reference"),
                                           (4, "Hours", "Heures", 3, "1", "reference")):
        emit("uom_uom", {"id": uid, "name": tr(en, fr), "category_id": cat, "factor": Decimal(factor),
                         "rounding": CENT, "active": True, "uom_type": kind, **audit(at, ROOT_UID)})
    for cid, name, parent, path in ((1, "All", None, "1/"), (2, "Saleable", 1, "1/2/"),
                                    (3, "Services", 1, "1/3/"), (4, "Office Furniture", 2, "1/2/4/"),
                                    (5, "Hardware", 2, "1/2/5/")):
        complete = name if parent is None else ("All / " + ("Saleable / " if parent == 2 else "") + name)
        emit("product_category", {"id": cid, "name": name, "complete_name": complete, "parent_id": parent,
                                  "parent_path": path, **audit(at, ROOT_UID)})
    count = 8 * scale + 12
    for k in range(1, count + 1):
        created = at + timedelta(hours=k % 500, minutes=k % 60)
        service = rng.random() < 0.25
        if service:
            en, fr = rng.choice(SERVICES)
            categ, uom, price = 3, 4, money(rng, 40, 400)
        else:
            (noun_en, noun_fr), (adj_en, adj_fr) = rng.choice(NOUNS), rng.choice(ADJECTIVES)
            en, fr = f"{adj_en} {noun_en}", f"{noun_fr} {adj_fr}"
            categ, uom, price = rng.choice((4, 5)), 1, money(rng, 5, 1500)
        code = f"{'SRV' if service else 'FURN'}_{k:05d}"
        weight = Decimal("0.00") if service else money(rng, 0.2, 40)
        emit("product_template", {
            "id": k, "name": tr(en, fr), "sequence": 1, "description": None, "description_purchase": None,
            "description_sale": tr(f"{en} — sold by Lakehouse Demo", f"{fr} — vendu par Lakehouse Demo")
            if rng.random() < 0.3 else None,
            "detailed_type": "service" if service else "consu", "type": "service" if service else "consu",
            "categ_id": categ, "list_price": price, "volume": Decimal("0.00"), "weight": weight,
            "sale_ok": True, "purchase_ok": rng.random() < 0.8, "uom_id": uom, "uom_po_id": uom,
            "company_id": None, "active": rng.random() < 0.97, "color": 0, "default_code": code,
            "priority": "0", "invoice_policy": "order" if service else rng.choice(("order", "delivery")),
            "service_type": "manual", "expense_policy": "no", "sale_line_warn": "no-message",
            **audit(created)})
        emit("product_product", {
            "id": k, "product_tmpl_id": k, "default_code": code, "active": True,
            "barcode": None if service else f"{rng.randrange(10**12, 10**13)}", "combination_indices": "",
            "volume": Decimal("0.00"), "weight": weight, **audit(created)})
        m.products.append(Product(k, k, f"[{code}] {en}", price, service, uom, rng.random() < 0.15))


def _accounting(m: Master, emit: Emit, at: datetime) -> None:
    aid = 0
    for company in m.companies:
        us = company.currency_id == 2
        for role, codes, account_type, reconcile, en, fr in CHART:
            aid += 1
            m.accounts[(company.id, role)] = aid
            m.account_types[aid] = account_type
            group = account_type.split("_")[0]
            emit("account_account", {
                "id": aid, "name": tr(en, fr), "currency_id": None, "code": codes[1 if us else 0],
                "deprecated": False, "account_type": account_type, "internal_group": group,
                "reconcile": reconcile, "non_trade": False,
                "include_initial_balance": group in ("asset", "liability", "equity")
                and account_type != "equity_unaffected", "note": None, "company_id": company.id,
                **audit(at, ROOT_UID)})
    jid = 0
    for company in m.companies:
        for seq, (role, code, jtype, en, fr, default_role) in enumerate(JOURNALS, start=1):
            jid += 1
            m.journals[(company.id, role)] = (jid, code)
            emit("account_journal", {
                "id": jid, "name": tr(en, fr), "code": code, "active": True, "type": jtype,
                "default_account_id": m.accounts[(company.id, default_role)] if default_role else None,
                "suspense_account_id": m.accounts[(company.id, "suspense")] if jtype in ("bank", "cash")
                else None, "sequence": seq * 5, "currency_id": None, "company_id": company.id,
                "payment_sequence": jtype in ("bank", "cash"), "refund_sequence": jtype in ("sale", "purchase"),
                **audit(at, ROOT_UID)})
    tid = 0
    for company in m.companies:
        us = company.currency_id == 2
        for use in ("sale", "purchase"):
            for reduced in (False, True):
                tid += 1
                amount = Decimal("8.875" if us else "21") if not reduced else Decimal("4" if us else "6")
                label = f"{amount.normalize()}%"
                m.taxes[(company.id, use, reduced)] = (tid, amount / 100, label)
                m.tax_labels[tid] = label
                emit("account_tax", {
                    "id": tid, "name": tr(f"{label} {'S' if use == 'sale' else 'P'}",
                                          f"{label} {'V' if use == 'sale' else 'A'}"),
                    "type_tax_use": use, "amount_type": "percent", "amount": amount, "active": True,
                    "company_id": company.id, "sequence": 1 if not reduced else 2, "price_include": False,
                    "include_base_amount": False, "description": None, "invoice_label": tr(label, label),
                    "tax_exigibility": "on_invoice", "country_id": company.country_id,
                    **audit(at, ROOT_UID)})
