-- Chart of accounts, names flattened to English.
WITH account AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY _loaded_at DESC, write_date DESC) AS _rn
        FROM bronze.account_account
    ) WHERE _rn = 1 AND NOT _deleted
)
SELECT
    id::BIGINT AS account_id,
    code::VARCHAR AS account_code,
    coalesce(json_extract_string(name::VARCHAR, '$.en_US'), name::VARCHAR) AS account_name,
    account_type::VARCHAR AS account_type,
    company_id::BIGINT AS company_id,
    write_date::TIMESTAMP AS updated_at
FROM account
ORDER BY account_id
