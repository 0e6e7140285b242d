-- One row per partner (customers and vendors).
WITH partner AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.res_partner
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    id::BIGINT AS partner_id,
    name::VARCHAR AS partner_name,
    company_id::BIGINT AS company_id,
    coalesce(customer_rank, 0)::INTEGER > 0 AS is_customer,
    coalesce(supplier_rank, 0)::INTEGER > 0 AS is_supplier,
    write_date::TIMESTAMP AS updated_at
FROM partner
ORDER BY partner_id
