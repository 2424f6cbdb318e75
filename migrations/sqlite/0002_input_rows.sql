-- Row links: every input row read, with its own id, so results can be joined back to the
-- customer rows they came from.
CREATE TABLE input_rows (
    source      TEXT NOT NULL,     -- --source-name: the file name of a CSV, or the table name
    row_ref     TEXT NOT NULL,     -- the row's own id: --id-column, the primary key, the rowid, or the data row number
    position    INTEGER NOT NULL,  -- 1-based place of the row in the input, as last read
    input_value TEXT,              -- the value as it stood in the input (NULL when the row could not be read)
    chat_id     TEXT,              -- NULL when the value is not a valid id
    error       TEXT,              -- why the value is not a valid id
    run_id      INTEGER NOT NULL,  -- the last run that read this row
    seen_at     TEXT NOT NULL,     -- when that run read it
    PRIMARY KEY (source, row_ref)
);
CREATE INDEX input_rows_by_position ON input_rows (source, position);

-- One row per input row, with what greenrich knows of its contact.
CREATE VIEW enriched AS
SELECT
    r.source,
    r.row_ref,
    r.input_value,
    r.chat_id,
    CASE
        WHEN r.chat_id IS NULL THEN 'invalid'
        WHEN c.chat_id IS NOT NULL THEN 'enriched'
        WHEN f.key IS NOT NULL THEN 'failed'
        ELSE 'pending'
    END AS status,
    CASE
        WHEN r.chat_id IS NULL THEN r.error
        WHEN c.chat_id IS NULL THEN f.message
    END AS error,
    c.name,
    c.contact_name,
    c.email,
    c.category,
    c.description,
    c.avatar_url,
    c.is_business,
    c.last_seen_at,
    CASE WHEN c.chat_id IS NOT NULL
        THEN (SELECT COUNT(*) FROM products p WHERE p.chat_id = c.chat_id)
    END AS products,
    c.fetched_at,
    r.position                          -- the row's place in the input, for ordering
FROM input_rows r
LEFT JOIN contacts c ON c.chat_id = r.chat_id
LEFT JOIN failures f ON f.key = r.chat_id;
