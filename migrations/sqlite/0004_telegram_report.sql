-- Telegram: the chat id checkAccount found for each phone number (`+digits`) or `@username`, so
-- that each is resolved once. A row links to its phone number or username in `input_rows`; the
-- view follows the handle to its contact. (No account is a failure of the handle: reason
-- `no_account`, asked again after --retry-failed-after.)
CREATE TABLE handles (
    handle      TEXT PRIMARY KEY,   -- +79876543210 or @username
    chat_id     TEXT NOT NULL,      -- the Telegram user id
    resolved_at TEXT NOT NULL
);

-- What the run report charts, kept while a run goes: calls and 429s per instance and minute of
-- the run, with the pacer's spacing at that minute's last call.
CREATE TABLE run_minutes (
    run_id     INTEGER NOT NULL,
    instance   TEXT NOT NULL,
    minute     INTEGER NOT NULL,    -- minutes since the run began
    calls      INTEGER NOT NULL,
    http_429   INTEGER NOT NULL,
    spacing_ms REAL,
    PRIMARY KEY (run_id, instance, minute)
);

-- The view follows a Telegram handle to its chat id.
DROP VIEW enriched;
CREATE VIEW enriched AS
SELECT
    r.source,
    r.row_ref,
    r.input_value,
    COALESCE(h.chat_id, r.chat_id) AS chat_id,
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
    c.changed_at,
    c.last_change AS change,
    r.position                          -- the row's place in the input, for ordering
FROM input_rows r
LEFT JOIN handles h ON h.handle = r.chat_id
LEFT JOIN contacts c ON c.chat_id = COALESCE(h.chat_id, r.chat_id)
LEFT JOIN failures f ON f.key = COALESCE(h.chat_id, r.chat_id);
