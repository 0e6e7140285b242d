-- Accounts-receivable aging: open posted receivable items by due date against the run's as-of date
-- (getvariable('as_of'), set by the transform phase from the run's parameters). Written in the SQL that
-- DuckDB and Spark share (the pipeline's transform may run on either): buckets compare dates with
-- date − INTERVAL n DAY rather than subtracting dates (an integer in DuckDB, an interval in Spark).
WITH open_items AS (
    SELECT
        l.company_id,
        l.partner_id,
        l.amount_residual,
        coalesce(l.date_maturity, l.date) AS due,
        getvariable('as_of')::DATE AS as_of
    FROM silver.journal_lines l
    JOIN silver.accounts a ON a.account_id = l.account_id
    WHERE l.parent_state = 'posted'
      AND a.account_type = 'asset_receivable'
      AND l.amount_residual <> 0
)
SELECT
    company_id,
    partner_id,
    CASE
        WHEN due >= as_of THEN 'current'
        WHEN due >= as_of - INTERVAL 30 DAY THEN '1-30'
        WHEN due >= as_of - INTERVAL 60 DAY THEN '31-60'
        WHEN due >= as_of - INTERVAL 90 DAY THEN '61-90'
        ELSE '90+'
    END AS bucket,
    sum(amount_residual)::DECIMAL(18, 2) AS amount_residual,
    count(*) AS items
FROM open_items
GROUP BY ALL
ORDER BY company_id, partner_id NULLS FIRST, bucket
