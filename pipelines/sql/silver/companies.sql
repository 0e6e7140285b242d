-- One row per company with its currency code.
WITH company AS (
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
    c.id::BIGINT AS company_id,
    c.name::VARCHAR AS company_name,
    c.currency_id::BIGINT AS currency_id,
    cur.name::VARCHAR AS currency_code,
    c.write_date::TIMESTAMP AS updated_at
FROM company c
LEFT JOIN currency cur ON cur.id = c.currency_id
ORDER BY company_id
