"""The Odoo 17 tables the seed creates: names, columns and column types as Odoo's ORM lays them out.

Column types follow Odoo's field → column mapping: ``Many2one`` → ``int4``, ``Char``/``Selection`` →
``varchar``, ``Text``/``Html`` → ``text``, ``Monetary`` and ``Float`` with digits → unconstrained
``numeric``, ``Float`` without digits → ``float8``, translatable fields (``translate=True``) →
``jsonb`` like ``{"en_US": "…", "fr_FR": "…"}``, ``Date`` → ``date``, ``Datetime`` → ``timestamp``
(naive UTC). Only stored fields exist as columns; company-dependent fields (``standard_price``,
property accounts) live elsewhere in Odoo and are left out. No foreign keys are declared (loading
stays fast and ``mutate`` can delete in any order); ids are consistent all the same.

On SQLite the declared types are chosen for their affinity so nothing turns into a binary float:
money columns are ``DECIMAL_TEXT`` (TEXT affinity; values are decimal strings such as ``"12.50"``),
JSON columns ``JSON_TEXT``, dates ``DATE`` and timestamps ``TIMESTAMP`` as ISO text
(``YYYY-MM-DD HH:MM:SS``), booleans ``BOOLEAN`` as 0/1. ``sources`` maps these names back to
decimal128, string, date32, timestamp[us] and bool.
"""

from __future__ import annotations

from dataclasses import dataclass

# logical type -> (PostgreSQL type, SQLite declared type)
TYPES: dict[str, tuple[str, str]] = {
    "id": ("serial", "INTEGER"),
    "int": ("integer", "INTEGER"),
    "varchar": ("character varying", "VARCHAR"),
    "text": ("text", "TEXT"),
    "bool": ("boolean", "BOOLEAN"),
    "date": ("date", "DATE"),
    "ts": ("timestamp without time zone", "TIMESTAMP"),
    "num": ("numeric", "DECIMAL_TEXT"),
    "float": ("double precision", "REAL"),
    "json": ("jsonb", "JSON_TEXT"),
}

AUDIT = (("create_uid", "int"), ("create_date", "ts"), ("write_uid", "int"), ("write_date", "ts"))


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def ddl(self, dialect: str) -> list[str]:
        pick = 0 if dialect == "postgres" else 1
        cols = []
        for name, kind in self.columns:
            sql_type = TYPES[kind][pick]
            suffix = " NOT NULL PRIMARY KEY" if kind == "id" else ""
            cols.append(f'"{name}" {sql_type}{suffix}')
        statements = [f'CREATE TABLE "{self.name}" ({", ".join(cols)})']
        return statements

    def index_ddl(self) -> list[str]:
        return [f'CREATE INDEX "{self.name}_{"_".join(cols)}_index" ON "{self.name}" ({", ".join(cols)})'
                for cols in self.indexes]


def _table(name: str, spec: str, indexes: tuple[tuple[str, ...], ...] = ()) -> Table:
    """``spec`` is whitespace-separated ``column:type`` pairs; id first, audit columns last."""
    cols = [("id", "id")]
    for item in spec.split():
        col, kind = item.split(":")
        if kind not in TYPES:
            raise ValueError(f"{name}.{col}: unknown type {kind}")
        cols.append((col, kind))
    return Table(name, (*cols, *AUDIT), indexes)


TABLES: tuple[Table, ...] = (
    _table("res_currency", """
        name:varchar full_name:varchar symbol:varchar rounding:num decimal_places:int active:bool
        position:varchar currency_unit_label:json currency_subunit_label:json"""),
    _table("res_currency_rate", """
        name:date rate:num currency_id:int company_id:int""",
           (("currency_id", "name"),)),
    _table("res_country", """
        name:json code:varchar currency_id:int phone_code:int"""),
    _table("res_company", """
        name:varchar partner_id:int currency_id:int sequence:int parent_id:int active:bool email:varchar
        phone:varchar company_registry:varchar account_fiscal_country_id:int fiscalyear_last_day:int
        fiscalyear_last_month:varchar anglo_saxon_accounting:bool"""),
    _table("res_partner", """
        name:varchar complete_name:varchar company_id:int type:varchar parent_id:int
        commercial_partner_id:int ref:varchar lang:varchar tz:varchar vat:varchar street:varchar
        street2:varchar zip:varchar city:varchar country_id:int email:varchar phone:varchar
        mobile:varchar website:varchar is_company:bool active:bool employee:bool function:varchar
        color:int partner_share:bool commercial_company_name:varchar company_registry:varchar
        customer_rank:int supplier_rank:int user_id:int comment:text"""),
    _table("res_users", """
        login:varchar partner_id:int company_id:int active:bool share:bool notification_type:varchar"""),
    _table("uom_uom", """
        name:json category_id:int factor:num rounding:num active:bool uom_type:varchar"""),
    _table("product_category", """
        name:varchar complete_name:varchar parent_id:int parent_path:varchar"""),
    _table("product_template", """
        name:json sequence:int description:json description_purchase:json description_sale:json
        detailed_type:varchar type:varchar categ_id:int list_price:num volume:num weight:num
        sale_ok:bool purchase_ok:bool uom_id:int uom_po_id:int company_id:int active:bool color:int
        default_code:varchar priority:varchar invoice_policy:varchar service_type:varchar
        expense_policy:varchar sale_line_warn:varchar"""),
    _table("product_product", """
        product_tmpl_id:int default_code:varchar active:bool barcode:varchar combination_indices:varchar
        volume:num weight:num""", (("product_tmpl_id",),)),
    _table("account_account", """
        name:json currency_id:int code:varchar deprecated:bool account_type:varchar
        internal_group:varchar reconcile:bool non_trade:bool include_initial_balance:bool
        note:text company_id:int"""),
    _table("account_journal", """
        name:json code:varchar active:bool type:varchar default_account_id:int
        suspense_account_id:int sequence:int currency_id:int company_id:int
        payment_sequence:bool refund_sequence:bool"""),
    _table("account_tax", """
        name:json type_tax_use:varchar amount_type:varchar amount:num active:bool company_id:int
        sequence:int price_include:bool include_base_amount:bool description:json invoice_label:json
        tax_exigibility:varchar country_id:int"""),
    _table("account_move", """
        name:varchar ref:varchar date:date state:varchar move_type:varchar journal_id:int
        company_id:int currency_id:int partner_id:int commercial_partner_id:int
        partner_shipping_id:int payment_reference:varchar invoice_date:date invoice_date_due:date
        invoice_origin:varchar invoice_payment_term_id:int invoice_user_id:int fiscal_position_id:int
        narration:text payment_state:varchar amount_untaxed:num amount_tax:num amount_total:num
        amount_residual:num amount_untaxed_signed:num amount_tax_signed:num amount_total_signed:num
        amount_total_in_currency_signed:num amount_residual_signed:num reversed_entry_id:int
        payment_id:int statement_line_id:int sequence_prefix:varchar sequence_number:int
        auto_post:varchar to_check:bool posted_before:bool is_move_sent:bool is_storno:bool
        always_tax_exigible:bool invoice_partner_display_name:varchar""",
           (("date",), ("partner_id",), ("journal_id",))),
    _table("account_payment", """
        move_id:int is_reconciled:bool is_matched:bool is_internal_transfer:bool
        payment_method_line_id:int amount:num payment_type:varchar partner_type:varchar
        payment_reference:varchar currency_id:int partner_id:int destination_account_id:int
        outstanding_account_id:int"""),
    _table("account_move_line", """
        move_id:int journal_id:int company_id:int company_currency_id:int move_name:varchar
        parent_state:varchar date:date invoice_date:date ref:varchar is_storno:bool sequence:int
        account_id:int name:varchar debit:num credit:num balance:num amount_currency:num
        currency_id:int partner_id:int reconcile_model_id:int payment_id:int statement_line_id:int
        statement_id:int tax_group_id:int tax_line_id:int tax_base_amount:num
        tax_repartition_line_id:int amount_residual:num amount_residual_currency:num reconciled:bool
        full_reconcile_id:int matching_number:varchar display_type:varchar product_id:int
        product_uom_id:int quantity:num date_maturity:date price_unit:num discount:num
        price_subtotal:num price_total:num blocked:bool tax_tag_invert:bool analytic_distribution:json""",
           (("move_id",), ("account_id", "date"), ("partner_id",))),
    _table("sale_order", """
        name:varchar state:varchar date_order:ts validity_date:date commitment_date:ts
        client_order_ref:varchar origin:varchar reference:varchar require_signature:bool
        require_payment:bool prepayment_percent:float partner_id:int partner_invoice_id:int
        partner_shipping_id:int pricelist_id:int currency_id:int currency_rate:num user_id:int
        team_id:int company_id:int payment_term_id:int fiscal_position_id:int note:text
        amount_untaxed:num amount_tax:num amount_total:num invoice_status:varchar locked:bool
        signed_by:varchar""", (("partner_id",), ("date_order",))),
    _table("sale_order_line", """
        order_id:int sequence:int company_id:int currency_id:int order_partner_id:int salesman_id:int
        state:varchar display_type:varchar is_downpayment:bool is_expense:bool product_id:int
        name:text product_uom_qty:num product_uom:int customer_lead:float price_unit:num
        discount:num price_subtotal:num price_tax:float price_total:num price_reduce_taxexcl:num
        price_reduce_taxinc:num qty_delivered_method:varchar qty_delivered:num qty_invoiced:num
        qty_to_invoice:num untaxed_amount_invoiced:num untaxed_amount_to_invoice:num
        invoice_status:varchar""", (("order_id",),)),
)

BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
