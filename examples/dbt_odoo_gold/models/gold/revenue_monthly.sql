-- Revenue by month × customer × product: −balance of posted income lines of customer invoices and refunds.
SELECT
    l.company_id,
    date_trunc('month', l.date)::DATE AS month,
    l.partner_id,
    l.product_id,
    (-sum(l.balance))::DECIMAL(18, 2) AS amount
FROM {{ ref('stg_posted_lines') }} l
JOIN {{ source('silver', 'accounts') }} a ON a.account_id = l.account_id
WHERE l.move_type IN ('out_invoice', 'out_refund')
  AND a.account_type IN ('income', 'income_other')
GROUP BY ALL
