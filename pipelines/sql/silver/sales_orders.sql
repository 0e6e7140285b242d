-- Sales orders (quotations, confirmed orders, cancellations).
WITH so AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.sale_order
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    id::BIGINT AS order_id,
    name::VARCHAR AS order_name,
    state::VARCHAR AS state,
    date_order::TIMESTAMP AS date_order,
    partner_id::BIGINT AS partner_id,
    company_id::BIGINT AS company_id,
    amount_untaxed::DECIMAL(18, 2) AS amount_untaxed,
    amount_total::DECIMAL(18, 2) AS amount_total,
    write_date::TIMESTAMP AS updated_at
FROM so
ORDER BY order_id
