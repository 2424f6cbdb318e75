-- greenrich's working store. Timestamps are RFC 3339 UTC text of fixed width, so they sort as text.

-- Marks this database's greenrich tables as ours (checked before touching a CRM database).
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
    is_business        INTEGER,
    last_seen_at       TEXT,
    is_archived        INTEGER,
    is_muted           INTEGER,
    is_disappearing    INTEGER,
    message_expiration INTEGER,
    mute_expiration    INTEGER,
    raw_json           TEXT NOT NULL,
    fetched_at         TEXT NOT NULL
);
-- Walked in order by the planner to queue the stalest contacts first, without a sort.
CREATE INDEX contacts_by_freshness ON contacts (fetched_at, chat_id);

CREATE TABLE products (
    chat_id           TEXT NOT NULL REFERENCES contacts (chat_id) ON DELETE CASCADE,
    product_id        TEXT NOT NULL,
    position          INTEGER NOT NULL,
    name              TEXT,
    description       TEXT,
    price             TEXT,
    availability      TEXT,
    is_hidden         INTEGER,
    review_status     TEXT,
    image_url         TEXT,
    image_preview_url TEXT,
    PRIMARY KEY (chat_id, product_id)
) WITHOUT ROWID;

-- The latest failure of each key; deleted when the key is enriched.
CREATE TABLE failures (
    key             TEXT PRIMARY KEY,  -- the chat id, or the raw input value when it is no valid id
    messenger       TEXT NOT NULL,
    input_value     TEXT,              -- the value as it stood in the input
    reason          TEXT NOT NULL,     -- a reason code: invalid_id, rejected, timeout, ...
    message         TEXT NOT NULL,
    http_status     INTEGER,
    attempts        INTEGER NOT NULL,
    permanent       INTEGER NOT NULL,  -- 1: retrying cannot help (bad id); 0: worth retrying
    first_failed_at TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    next_due_at     TEXT NOT NULL
);
CREATE INDEX failures_by_reason ON failures (reason);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,              -- NULL while running or after a crash
    options       TEXT NOT NULL,     -- JSON: the options that matter
    input_rows    INTEGER NOT NULL DEFAULT 0,
    invalid       INTEGER NOT NULL DEFAULT 0,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    skipped_fresh INTEGER NOT NULL DEFAULT 0,
    planned       INTEGER NOT NULL DEFAULT 0,
    enriched      INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    requests      INTEGER NOT NULL DEFAULT 0,
    http_429      INTEGER NOT NULL DEFAULT 0,
    retries       INTEGER NOT NULL DEFAULT 0,
    summary       TEXT               -- JSON: the final summary, failures by reason, calls per instance
);
