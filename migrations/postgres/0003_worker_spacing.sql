-- The spacing a worker's pacer has learnt, as of its last heartbeat (milliseconds between two
-- calls of one instance): a worker that takes its instances over after it dies starts from it
-- instead of finding the edge of the rate limit again with 429s.
ALTER TABLE workers ADD COLUMN spacing_ms DOUBLE PRECISION;
