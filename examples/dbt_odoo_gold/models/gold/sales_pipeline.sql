-- Sales pipeline: orders and untaxed amount by company, month of the order date and state.
SELECT
    company_id,
    date_trunc('month', date_order)::DATE AS month,
    state,
    count(*) AS orders,
    sum(amount_untaxed)::DECIMAL(18, 2) AS amount_untaxed
FROM {{ source('silver', 'sales_orders') }}
GROUP BY ALL
