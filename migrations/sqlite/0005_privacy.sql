-- Privacy (docs/privacy.md): the do-not-process list, and rows of listed people.

-- People who objected to being processed (`greenrich forget --suppress`): the keyed hash
-- (HMAC-SHA-256, hex) of each of their chat ids and Telegram handles, under the store's own key
-- (greenrich_meta 'suppression_key', drawn when the first person is listed). No phone number is
-- kept in clear; planning skips listed keys with no call.
CREATE TABLE suppressed (
    key_hash      TEXT PRIMARY KEY,
    suppressed_at TEXT NOT NULL
);

-- A row whose value is a listed person is linked with no value and no chat id, marked here.
ALTER TABLE input_rows ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;

-- The view says 'suppressed' for those rows.
DROP VIEW enriched;
CREATE VIEW enriched AS
SELECT
    r.source,
    r.row_ref,
    r.input_value,
    COALESCE(h.chat_id, r.chat_id) AS chat_id,
    CASE
        WHEN r.suppressed = 1 THEN 'suppressed'
        WHEN r.chat_id IS NULL THEN 'invalid'
        WHEN c.chat_id IS NOT NULL THEN 'enriched'
        WHEN f.key IS NOT NULL THEN 'failed'
        ELSE 'pending'
    END AS status,
    CASE
        WHEN r.suppressed = 1 THEN NULL
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
    c.changed_at,
    c.last_change AS change,
    r.position                          -- the row's place in the input, for ordering
FROM input_rows r
LEFT JOIN handles h ON h.handle = r.chat_id
LEFT JOIN contacts c ON c.chat_id = COALESCE(h.chat_id, r.chat_id)
LEFT JOIN failures f ON f.key = COALESCE(h.chat_id, r.chat_id);
