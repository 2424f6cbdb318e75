-- greenrich's store in PostgreSQL, in a schema of its own (greenrich by default; the connection's
-- search_path points at it). The tables and the view have the SQLite store's columns and types,
-- timestamps included (RFC 3339 UTC text of fixed width, so they sort as text; cast them with
-- ::timestamptz), so status, export and the CRM joins read the same on both stores.

CREATE TABLE greenrich_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO greenrich_meta (key, value) VALUES ('created_by', 'greenrich');

CREATE TABLE contacts (
    chat_id            TEXT PRIMARY KEY,
    messenger          TEXT NOT NULL,
    phone              TEXT,
    name               TEXT,
    contact_name       TEXT,
    email              TEXT,
    category           TEXT,
    description        TEXT,
    avatar_url         TEXT,
    is_business        BIGINT,
    last_seen_at       TEXT,
    is_archived        BIGINT,
    is_muted           BIGINT,
    is_disappearing    BIGINT,
    message_expiration BIGINT,
    mute_expiration    BIGINT,
    raw_json           TEXT NOT NULL,
    fetched_at         TEXT NOT NULL
);
CREATE INDEX contacts_by_freshness ON contacts (fetched_at, chat_id);

CREATE TABLE products (
    chat_id           TEXT NOT NULL REFERENCES contacts (chat_id) ON DELETE CASCADE,
    product_id        TEXT NOT NULL,
    position          BIGINT NOT NULL,
    name              TEXT,
    description       TEXT,
    price             TEXT,
    availability      TEXT,
    is_hidden         BIGINT,
    review_status     TEXT,
    image_url         TEXT,
    image_preview_url TEXT,
    PRIMARY KEY (chat_id, product_id)
);

CREATE TABLE failures (
    key             TEXT PRIMARY KEY,
    messenger       TEXT NOT NULL,
    input_value     TEXT,
    reason          TEXT NOT NULL,
    message         TEXT NOT NULL,
    http_status     BIGINT,
    attempts        BIGINT NOT NULL,
    permanent       BIGINT NOT NULL,
    first_failed_at TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    next_due_at     TEXT NOT NULL
);
CREATE INDEX failures_by_reason ON failures (reason);

CREATE TABLE runs (
    id            BIGSERIAL PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,
    options       TEXT NOT NULL,
    input_rows    BIGINT NOT NULL DEFAULT 0,
    invalid       BIGINT NOT NULL DEFAULT 0,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    skipped_fresh BIGINT NOT NULL DEFAULT 0,
    planned       BIGINT NOT NULL DEFAULT 0,
    enriched      BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    requests      BIGINT NOT NULL DEFAULT 0,
    http_429      BIGINT NOT NULL DEFAULT 0,
    retries       BIGINT NOT NULL DEFAULT 0,
    summary       TEXT
);

CREATE TABLE input_rows (
    source      TEXT NOT NULL,
    row_ref     TEXT NOT NULL,
    position    BIGINT NOT NULL,
    input_value TEXT,
    chat_id     TEXT,
    error       TEXT,
    run_id      BIGINT NOT NULL,
    seen_at     TEXT NOT NULL,
    PRIMARY KEY (source, row_ref)
);
CREATE INDEX input_rows_by_position ON input_rows (source, position);

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
    r.position
FROM input_rows r
LEFT JOIN contacts c ON c.chat_id = r.chat_id
LEFT JOIN failures f ON f.key = r.chat_id;
