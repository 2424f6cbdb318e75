-- Change tracking: for every contact, a fingerprint of the fields a CRM keeps (src/change.rs
-- names them, and those left out because they move on their own), when it was first seen and
-- when it last changed, and what each fetch found: how many fetches found it changed or
-- unchanged, and the time between those fetches and the one before (for estimating how often
-- the contact changes). `changes` records each contact a run found changed.
ALTER TABLE contacts ADD COLUMN fingerprint TEXT;
ALTER TABLE contacts ADD COLUMN first_seen_at TEXT;
ALTER TABLE contacts ADD COLUMN changed_at TEXT;
ALTER TABLE contacts ADD COLUMN changed_run BIGINT;           -- the run that last found it new or changed
ALTER TABLE contacts ADD COLUMN last_change TEXT;               -- what its last fetch found: new, changed or unchanged
ALTER TABLE contacts ADD COLUMN fetches_changed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN fetches_unchanged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN changed_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;   -- summed time before the fetches that found a change
ALTER TABLE contacts ADD COLUMN unchanged_seconds DOUBLE PRECISION NOT NULL DEFAULT 0; -- summed time before the fetches that found none
-- Contacts stored before change tracking were first seen by then at the latest.
UPDATE contacts SET first_seen_at = fetched_at, changed_at = fetched_at;
CREATE INDEX contacts_by_change ON contacts (changed_at);

CREATE TABLE changes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     BIGINT NOT NULL,
    chat_id    TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    fields     TEXT NOT NULL      -- the changed fields, comma-separated
);
CREATE INDEX changes_by_run ON changes (run_id);

-- The view gains when the contact last changed, and what its last fetch found.
DROP VIEW enriched;
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
    c.changed_at,
    c.last_change AS change,
    r.position
FROM input_rows r
LEFT JOIN contacts c ON c.chat_id = r.chat_id
LEFT JOIN failures f ON f.key = r.chat_id;
