-- Accounts-receivable aging: open posted receivable items by due date against the run's as-of date
-- (getvariable('as_of'), set by the transform phase from the run's parameters).
WITH open_items AS (
    SELECT
        l.company_id,
        l.partner_id,
        l.amount_residual,
        getvariable('as_of')::DATE - coalesce(l.date_maturity, l.date) AS days_overdue
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
        WHEN days_overdue <= 0 THEN 'current'
        WHEN days_overdue <= 30 THEN '1-30'
        WHEN days_overdue <= 60 THEN '31-60'
        WHEN days_overdue <= 90 THEN '61-90'
        ELSE '90+'
    END AS bucket,
    sum(amount_residual)::DECIMAL(18, 2) AS amount_residual,
    count(*) AS items
FROM open_items
GROUP BY ALL
ORDER BY company_id, partner_id NULLS FIRST, bucket
