-- Journal entries (invoices, refunds, bills, misc entries); drafts and cancellations kept with their state.
WITH move AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.account_move
    ) WHERE _rn = 1 AND NOT _deleted
),
company AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.res_company
    ) WHERE _rn = 1 AND NOT _deleted
),
currency AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.res_currency
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    m.id::BIGINT AS move_id,
    m.name::VARCHAR AS move_name,
    m.move_type::VARCHAR AS move_type,
    m.state::VARCHAR AS state,
    m.payment_state::VARCHAR AS payment_state,
    m.date::DATE AS date,
    m.invoice_date::DATE AS invoice_date,
    m.invoice_date_due::DATE AS invoice_date_due,
    m.partner_id::BIGINT AS partner_id,
    m.company_id::BIGINT AS company_id,
    m.journal_id::BIGINT AS journal_id,
    doc_cur.name::VARCHAR AS currency_code,
    comp_cur.name::VARCHAR AS company_currency_code,
    m.amount_untaxed::DECIMAL(18, 2) AS amount_untaxed,
    m.amount_tax::DECIMAL(18, 2) AS amount_tax,
    m.amount_total::DECIMAL(18, 2) AS amount_total,
    m.amount_residual::DECIMAL(18, 2) AS amount_residual,
    m.amount_total_signed::DECIMAL(18, 2) AS amount_total_company,
    m.write_date::TIMESTAMP AS updated_at
FROM move m
LEFT JOIN company c ON c.id = m.company_id
LEFT JOIN currency comp_cur ON comp_cur.id = c.currency_id
LEFT JOIN currency doc_cur ON doc_cur.id = m.currency_id
ORDER BY move_id
