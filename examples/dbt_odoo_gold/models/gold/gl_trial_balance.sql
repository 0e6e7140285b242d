-- General-ledger trial balance: posted journal items by company, account and month (company currency).
SELECT
    company_id,
    account_id,
    date_trunc('month', date)::DATE AS month,
    sum(debit)::DECIMAL(18, 2) AS debit,
    sum(credit)::DECIMAL(18, 2) AS credit,
    sum(balance)::DECIMAL(18, 2) AS balance,
    count(*) AS lines
FROM {{ ref('stg_posted_lines') }}
GROUP BY ALL
