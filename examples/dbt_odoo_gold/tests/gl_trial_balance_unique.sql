-- One row per company, account and month (the mart's key).
SELECT company_id, account_id, month, count(*) AS n
FROM {{ ref('gl_trial_balance') }}
GROUP BY ALL
HAVING count(*) > 1
