-- Posted journal items (draft and cancelled entries never reach the ledger marts).
SELECT *
FROM {{ source('silver', 'journal_lines') }}
WHERE parent_state = 'posted'
