-- Several workers (greenrich processes, on one host or many) share a store in PostgreSQL.

-- Every worker that has run on this store: where, which instances it leased, and when it last
-- said it was alive. Its instances are leased with session advisory locks, which PostgreSQL
-- releases when the worker's connection ends, however the process ends.
CREATE TABLE workers (
    id           BIGSERIAL PRIMARY KEY,
    run_id       BIGINT NOT NULL,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    instances    TEXT NOT NULL,               -- comma-separated instance ids
    session_pid  INTEGER NOT NULL,            -- the server process of its session: live while it is
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ
);

-- Due keys, shared by the workers (after pgmq's visibility timeout): a worker claims a batch
-- with FOR UPDATE SKIP LOCKED, setting claimed_by and claimed_until; its heartbeat pushes
-- claimed_until on while it lives, so a claim of a worker that died is free again once that time
-- has passed. A key's result marks its row done in the same transaction as the contact. A plan
-- reopens a done row only when the plan saw that result (done_xid is visible in the plan's
-- snapshot) and still found the key due.
CREATE TABLE work_queue (
    key           TEXT PRIMARY KEY,
    phone         TEXT,
    position      BIGINT NOT NULL,            -- the order the planning worker gave it
    claimed_by    BIGINT,                     -- workers.id
    claimed_until TIMESTAMPTZ,
    done_at       TIMESTAMPTZ,                -- NULL while it is to do
    done_xid      XID8
);
CREATE INDEX work_queue_to_do ON work_queue (position) WHERE done_at IS NULL;
