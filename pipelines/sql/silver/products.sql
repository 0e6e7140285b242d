-- One row per product variant, with the template's translated name flattened to English.
WITH tmpl AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.product_template
    ) WHERE _rn = 1 AND NOT _deleted
),
variant AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.product_product
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    v.id::BIGINT AS product_id,
    v.product_tmpl_id::BIGINT AS template_id,
    v.default_code::VARCHAR AS default_code,
    coalesce(json_extract_string(t.name::VARCHAR, '$.en_US'), t.name::VARCHAR) AS product_name,
    json_extract_string(t.name::VARCHAR, '$.fr_FR') AS product_name_fr,
    t.list_price::DECIMAL(18, 2) AS list_price,
    greatest(v.write_date, t.write_date)::TIMESTAMP AS updated_at
FROM variant v
LEFT JOIN tmpl t ON t.id = v.product_tmpl_id
ORDER BY product_id
