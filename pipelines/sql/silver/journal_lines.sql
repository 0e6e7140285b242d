-- Journal items with their entry's type and state; amounts in company currency (debit, credit, balance)
-- and in the document currency (amount_currency).
WITH line AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.account_move_line
    ) WHERE _rn = 1 AND NOT _deleted
),
move AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.account_move
    ) WHERE _rn = 1 AND NOT _deleted
),
currency AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.res_currency
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    l.id::BIGINT AS line_id,
    l.move_id::BIGINT AS move_id,
    m.move_type::VARCHAR AS move_type,
    l.parent_state::VARCHAR AS parent_state,
    l.date::DATE AS date,
    l.date_maturity::DATE AS date_maturity,
    l.company_id::BIGINT AS company_id,
    l.account_id::BIGINT AS account_id,
    l.partner_id::BIGINT AS partner_id,
    l.product_id::BIGINT AS product_id,
    l.display_type::VARCHAR AS display_type,
    l.quantity::DECIMAL(18, 4) AS quantity,
    l.debit::DECIMAL(18, 2) AS debit,
    l.credit::DECIMAL(18, 2) AS credit,
    l.balance::DECIMAL(18, 2) AS balance,
    l.amount_residual::DECIMAL(18, 2) AS amount_residual,
    l.amount_currency::DECIMAL(18, 2) AS amount_currency,
    cur.name::VARCHAR AS currency_code,
    ccur.name::VARCHAR AS company_currency_code,
    l.write_date::TIMESTAMP AS updated_at
FROM line l
JOIN move m ON m.id = l.move_id
LEFT JOIN currency cur ON cur.id = l.currency_id
LEFT JOIN currency ccur ON ccur.id = l.company_currency_id
ORDER BY line_id
