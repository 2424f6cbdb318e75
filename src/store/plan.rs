//! Planning: stages the normalised input in a temporary table, lets SQLite decide which keys are
//! due (never fetched, failed and due again, stale), and hands them out in priority order.
//!
//! Memory stays flat whatever the input size: the set work (de-duplication, joins against the
//! store, ordering) happens in the database.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{Store, StoreError};

/// Rows per multi-row INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;

/// A valid, normalised key read from the input.
#[derive(Debug, Clone)]
pub struct InputKey {
    pub chat_id: String,
    pub phone: Option<String>,
    /// Where it stood in the input: never-fetched keys are fetched in input order.
    pub line: u64,
}

/// A value from the input that cannot be fetched, with why.
#[derive(Debug, Clone)]
pub struct InvalidValue {
    pub key: String,
    pub input_value: String,
    pub reason: &'static str,
    pub message: String,
}

/// Which keys are due.
#[derive(Debug, Clone)]
pub struct Policy {
    pub now: String,
    /// A contact fetched at or after this time is fresh and skipped.
    pub fresh_from: String,
    /// A permanently failed key last tried at or before this time is due again.
    pub permanent_retry_before: String,
    /// Only keys that have a failure row are due.
    pub only_failed: bool,
}

/// What the planner found; the plan line of every run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanCounts {
    pub never_fetched: u64,
    pub retry: u64,
    pub stale: u64,
    pub skipped_fresh: u64,
    pub failed_not_due: u64,
}

impl PlanCounts {
    pub fn due(&self) -> u64 {
        self.never_fetched + self.retry + self.stale
    }
}

/// A due key, in the order it should be fetched.
#[derive(Debug, Clone)]
pub struct DueKey {
    pub seq: i64,
    pub chat_id: String,
    pub phone: Option<String>,
}

// The classes of a due key, in priority order (3 is fresh and 4 failed but not due: not queued).
const NEVER: i64 = 0;
const RETRY: i64 = 1;
const STALE: i64 = 2;

pub struct Planner {
    conn: SqliteConnection,
}

impl Planner {
    pub async fn new(store: &Store) -> Result<Planner, StoreError> {
        let mut conn = store.connect().await?;
        sqlx::query("CREATE TEMP TABLE input (chat_id TEXT PRIMARY KEY, phone TEXT, line INTEGER NOT NULL) WITHOUT ROWID")
            .execute(&mut conn)
            .await?;
        Ok(Planner { conn })
    }

    /// Adds valid keys; a key staged twice is kept once, with its first line.
    pub async fn stage(&mut self, keys: &[InputKey]) -> Result<(), StoreError> {
        let mut tx = sqlx::Connection::begin(&mut self.conn).await?;
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO temp.input (chat_id, phone, line) ");
            q.push_values(chunk, |mut row, key| {
                row.push_bind(&key.chat_id)
                    .push_bind(&key.phone)
                    .push_bind(key.line as i64);
            });
            q.push(
                " ON CONFLICT (chat_id) DO UPDATE SET line = excluded.line, phone = excluded.phone \
                 WHERE excluded.line < input.line",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many distinct keys are staged.
    pub async fn distinct(&mut self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp.input")
            .fetch_one(&mut self.conn)
            .await?;
        Ok(n as u64)
    }

    /// Records values that can never be fetched as permanent failures (no call is made).
    pub async fn record_invalid(
        &mut self,
        values: &[InvalidValue],
        messenger: &str,
        now: &str,
        next_due: &str,
    ) -> Result<(), StoreError> {
        let mut tx = sqlx::Connection::begin(&mut self.conn).await?;
        for chunk in values.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO failures (key, messenger, input_value, reason, message, http_status, \
                 attempts, permanent, first_failed_at, last_attempt_at, next_due_at) ",
            );
            q.push_values(chunk, |mut row, v| {
                row.push_bind(&v.key)
                    .push_bind(messenger)
                    .push_bind(&v.input_value)
                    .push_bind(v.reason)
                    .push_bind(&v.message)
                    .push_bind(None::<i64>)
                    .push_bind(0_i64)
                    .push_bind(1_i64)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(next_due);
            });
            q.push(
                " ON CONFLICT (key) DO UPDATE SET reason = excluded.reason, \
                 message = excluded.message, input_value = excluded.input_value, \
                 last_attempt_at = excluded.last_attempt_at, next_due_at = excluded.next_due_at",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Classifies every staged key against the store and queues the due ones in priority order:
    /// never fetched (in input order), then failed and due again, then the stalest first.
    pub async fn plan(&mut self, policy: &Policy) -> Result<PlanCounts, StoreError> {
        let mut tx = sqlx::Connection::begin(&mut self.conn).await?;
        sqlx::query("DROP TABLE IF EXISTS temp.queue")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TEMP TABLE queue (seq INTEGER PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT, \
             class INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        // One pass: join each staged key with its contact and failure rows, keep the due ones,
        // and sort them once into the queue.
        sqlx::query(
            "INSERT INTO temp.queue (chat_id, phone, class)
             SELECT chat_id, phone, class FROM (
               SELECT i.chat_id, i.phone, i.line, c.fetched_at,
                 CASE
                   WHEN f.key IS NOT NULL THEN
                     CASE WHEN ?1 OR (f.permanent = 0 AND f.next_due_at <= ?2)
                               OR (f.permanent = 1 AND f.last_attempt_at <= ?3)
                          THEN 1 ELSE 4 END
                   WHEN ?1 THEN 3
                   WHEN c.chat_id IS NULL THEN 0
                   WHEN c.fetched_at < ?4 THEN 2
                   ELSE 3
                 END AS class
               FROM temp.input i
               LEFT JOIN contacts c ON c.chat_id = i.chat_id
               LEFT JOIN failures f ON f.key = i.chat_id)
             WHERE class < 3
             ORDER BY class, fetched_at, line",
        )
        .bind(policy.only_failed)
        .bind(&policy.now)
        .bind(&policy.permanent_retry_before)
        .bind(&policy.fresh_from)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query("SELECT class, COUNT(*) FROM temp.queue GROUP BY class")
            .fetch_all(&mut *tx)
            .await?;
        // Failed keys that are not due yet (the failures table is small next to the input).
        let failed_not_due: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM failures f JOIN temp.input i ON i.chat_id = f.key
             WHERE NOT (?1 OR (f.permanent = 0 AND f.next_due_at <= ?2)
                           OR (f.permanent = 1 AND f.last_attempt_at <= ?3))",
        )
        .bind(policy.only_failed)
        .bind(&policy.now)
        .bind(&policy.permanent_retry_before)
        .fetch_one(&mut *tx)
        .await?;
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp.input")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut counts = PlanCounts {
            failed_not_due: failed_not_due as u64,
            ..PlanCounts::default()
        };
        for row in rows {
            let n = row.get::<i64, _>(1) as u64;
            match row.get::<i64, _>(0) {
                NEVER => counts.never_fetched = n,
                RETRY => counts.retry = n,
                STALE => counts.stale = n,
                _ => {}
            }
        }
        counts.skipped_fresh = (staged as u64).saturating_sub(counts.due() + counts.failed_not_due);
        Ok(counts)
    }

    /// The next `limit` due keys after position `after`.
    pub async fn page(&mut self, after: i64, limit: i64) -> Result<Vec<DueKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, chat_id, phone FROM temp.queue WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DueKey {
                seq: r.get(0),
                chat_id: r.get(1),
                phone: r.get(2),
            })
            .collect())
    }
}
