//! Planning: stages the normalised input in a temporary table, lets the database decide which
//! keys are due (never fetched, failed and due again, stale), and hands them out in priority order.
//!
//! Memory stays flat whatever the input size: the set work (de-duplication, joins against the
//! store, ordering) happens in the database.

use sqlx::{QueryBuilder, Row};

use chrono::{DateTime, Utc};

use super::conn::{on_conn, Conn, Engine};
use super::writer::{upsert_failures, FailedKey, RetryDelays};
use super::{last_per_key, Store, StoreError};
use crate::chat_id::Messenger;

/// Rows per multi-row INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;

/// A valid, normalised key read from the input.
#[derive(Debug, Clone)]
pub(crate) struct InputKey {
    pub(crate) chat_id: String,
    pub(crate) phone: Option<String>,
    /// Where it stood in the input: never-fetched keys are fetched in input order.
    pub(crate) line: u64,
}

/// Which keys are due.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) now: String,
    /// A contact fetched at or after this time is fresh and skipped (`--max-age`); `None`:
    /// nothing is fresh by age. (Contacts fetched by runs that are not over are fresh too: see
    /// [`Planner::plan`].)
    pub(crate) fresh_from: Option<String>,
    /// When this run began (`None` for a dry run, which has no row in the ledger).
    pub(crate) run_started_at: Option<String>,
    /// A permanently failed key last tried at or before this time is due again.
    pub(crate) permanent_retry_before: String,
    /// Only keys that have a failure row are due.
    pub(crate) only_failed: bool,
}

/// What the planner found; the plan line of every run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlanCounts {
    /// Due keys never fetched.
    pub never_fetched: u64,
    /// Due keys whose failure's retry time has come.
    pub retry: u64,
    /// Due keys whose contact is stale.
    pub stale: u64,
    /// Keys skipped as fresh.
    pub skipped_fresh: u64,
    /// Failed keys whose retry time has not come.
    pub failed_not_due: u64,
}

impl PlanCounts {
    /// Every due key.
    pub fn due(&self) -> u64 {
        self.never_fetched + self.retry + self.stale
    }
}

/// A due key, in the order it should be fetched.
#[derive(Debug, Clone)]
pub(crate) struct DueKey {
    pub(crate) seq: i64,
    pub(crate) chat_id: String,
    pub(crate) phone: Option<String>,
}

/// When a failed key is due again: always with --only-failed ($1); a transient failure when its
/// retry time ($2, now) has come; a permanent one once --retry-failed-after has passed ($3).
const FAILURE_IS_DUE: &str = "$1 OR (f.permanent = 0 AND f.next_due_at <= $2) \
                              OR (f.permanent = 1 AND f.last_attempt_at <= $3)";

/// The start of the earliest run whose contacts count as fresh for a run that began at $1:
/// the unbroken chain of runs since the last one that completed (interrupted, crashed, stopped
/// early, or still going: this one included), the runs that ended after this one began (workers
/// of a shared store that ran beside it), and whatever else `$extra` adds.
macro_rules! runs_not_over {
    ($($extra:literal)?) => {
        concat!(
            "SELECT MIN(started_at) FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs WHERE outcome = 'completed')
                OR finished_at >= $1"
            $(, $extra)?
        )
    };
}
const RUNS_NOT_OVER: &str = runs_not_over!();

/// [`RUNS_NOT_OVER`], and on a shared store the runs of the workers alive now (their session is
/// open), however the runs between them ended.
const RUNS_NOT_OVER_WITH_WORKERS: &str = runs_not_over!(
    " OR id IN (SELECT run_id FROM workers WHERE finished_at IS NULL
                AND session_pid IN (SELECT pid FROM pg_stat_activity))"
);

pub(crate) struct Planner {
    pub(super) conn: Conn,
    /// The snapshot the last plan saw (PostgreSQL), for publishing its keys.
    pub(super) snapshot: Option<String>,
}

impl Planner {
    pub(crate) async fn new(store: &Store) -> Result<Planner, StoreError> {
        let mut conn = store.connect().await?;
        // Keys are appended as they come (CRM exports are in no order), and de-duplicated by one
        // sort at the end: inserting a million random keys into an index page by page is what
        // made planning grow faster than its input.
        const CREATE: &str =
            "CREATE TEMP TABLE staged_keys (chat_id TEXT NOT NULL, phone TEXT, line BIGINT NOT NULL)";
        on_conn!(&mut conn, c => {
            sqlx::query(CREATE).execute(c).await?;
        });
        Ok(Planner {
            conn,
            snapshot: None,
        })
    }

    /// Adds valid keys (duplicates too: [`Planner::finish_staging`] keeps each key once).
    pub(crate) async fn stage(&mut self, keys: &[InputKey]) -> Result<(), StoreError> {
        on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::new("INSERT INTO staged_keys (chat_id, phone, line) ");
                q.push_values(chunk, |mut row, key| {
                    row.push_bind(&key.chat_id)
                        .push_bind(&key.phone)
                        .push_bind(key.line as i64);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends staging: each key is kept once, with its first line (batches arrive in input order).
    /// Returns how many distinct keys there are.
    pub(crate) async fn finish_staging(&mut self) -> Result<u64, StoreError> {
        let (create, fill) = match self.conn.engine() {
            // GROUP BY sorts once; the sorted rows then fill the key's index in order. (SQLite
            // takes the bare `phone` from the row of MIN(line).)
            Engine::Sqlite => (
                "CREATE TEMP TABLE input_keys (chat_id TEXT PRIMARY KEY, phone TEXT, line INTEGER NOT NULL) WITHOUT ROWID",
                "INSERT INTO input_keys (chat_id, phone, line)
                 SELECT chat_id, phone, MIN(line) FROM staged_keys GROUP BY chat_id",
            ),
            Engine::Postgres => (
                "CREATE TEMP TABLE input_keys (chat_id TEXT PRIMARY KEY, phone TEXT, line BIGINT NOT NULL)",
                "INSERT INTO input_keys (chat_id, phone, line)
                 SELECT DISTINCT ON (chat_id) chat_id, phone, line FROM staged_keys
                 ORDER BY chat_id, line",
            ),
        };
        let n: i64 = on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            sqlx::query(create).execute(&mut *tx).await?;
            sqlx::query(fill).execute(&mut *tx).await?;
            sqlx::query("DROP TABLE staged_keys").execute(&mut *tx).await?;
            tx.commit().await?;
            sqlx::query_scalar("SELECT COUNT(*) FROM input_keys")
                .fetch_one(c)
                .await?
        });
        Ok(n as u64)
    }

    /// Records values that can never be fetched as permanent failures (no call is made).
    pub(crate) async fn record_invalid(
        &mut self,
        values: &[FailedKey],
        messenger: Messenger,
        now: DateTime<Utc>,
        delays: &RetryDelays,
    ) -> Result<(), StoreError> {
        let values = last_per_key(values, |f| f.key.as_str());
        on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            for chunk in values.chunks(ROWS_PER_STATEMENT) {
                upsert_failures!(&mut *tx, chunk, messenger, now, delays);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Queues the due keys in priority order: never fetched (in input order), then failed keys
    /// whose retry time has come (oldest attempt first), then stale contacts (stalest first, by
    /// walking the freshness index, so no sort is needed however big the store is).
    ///
    /// A contact fetched since the start of a run that is not over is fresh, whatever
    /// `--max-age` says: a resumed run fetches nothing an interrupted one committed, and workers
    /// of a shared store that run at the same time fetch nothing another has fetched. Those runs
    /// are read in the plan's own snapshot (see [`RUNS_NOT_OVER`]), so a worker that began
    /// before the snapshot is seen with everything it committed.
    pub(crate) async fn plan(&mut self, policy: &Policy) -> Result<PlanCounts, StoreError> {
        let create = match self.conn.engine() {
            Engine::Sqlite => "CREATE TEMP TABLE due_keys (seq INTEGER PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT)",
            Engine::Postgres => "CREATE TEMP TABLE due_keys (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT)",
        };
        // On PostgreSQL every query of the plan sees one snapshot, kept for publishing.
        let (isolation, snapshot, runs_not_over) = match self.conn.engine() {
            Engine::Sqlite => (None, None, RUNS_NOT_OVER),
            Engine::Postgres => (
                Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
                Some("SELECT pg_current_snapshot()::text"),
                RUNS_NOT_OVER_WITH_WORKERS,
            ),
        };
        let (never_fetched, retry, stale, failed_not_due, staged) = on_conn!(&mut self.conn, c => {
        let mut tx = sqlx::Connection::begin(c).await?;
        if let Some(isolation) = isolation {
            sqlx::query(isolation).execute(&mut *tx).await?;
        }
        self.snapshot = match snapshot {
            Some(sql) => Some(sqlx::query_scalar(sql).fetch_one(&mut *tx).await?),
            None => None,
        };
        let not_over: Option<String> = sqlx::query_scalar(runs_not_over)
            .bind(&policy.run_started_at)
            .fetch_one(&mut *tx)
            .await?;
        let fresh_from = match (&policy.fresh_from, not_over) {
            (Some(by_age), Some(since)) => Some(by_age.clone().min(since)),
            (by_age, since) => by_age.clone().or(since),
        };
        sqlx::query("DROP TABLE IF EXISTS due_keys")
            .execute(&mut *tx)
            .await?;
        sqlx::query(create).execute(&mut *tx).await?;
        let never_fetched = sqlx::query(
            "INSERT INTO due_keys (chat_id, phone)
             SELECT i.chat_id, i.phone FROM input_keys i
             WHERE NOT $1
               AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.chat_id = i.chat_id)
               AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.key = i.chat_id)
             ORDER BY i.line",
        )
        .bind(policy.only_failed)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let retry = sqlx::query(&format!(
            "INSERT INTO due_keys (chat_id, phone)
             SELECT i.chat_id, i.phone FROM failures f JOIN input_keys i ON i.chat_id = f.key
             WHERE {FAILURE_IS_DUE}
             ORDER BY f.last_attempt_at, i.line"
        ))
        .bind(policy.only_failed)
        .bind(&policy.now)
        .bind(&policy.permanent_retry_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let stale = sqlx::query(
            "INSERT INTO due_keys (chat_id, phone)
             SELECT c.chat_id, i.phone FROM contacts c JOIN input_keys i ON i.chat_id = c.chat_id
             WHERE NOT $1 AND c.fetched_at < $2
               AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.key = c.chat_id)
             ORDER BY c.fetched_at",
        )
        .bind(policy.only_failed)
        // Without a freshness bound every contact is stale: a bound after every timestamp keeps
        // the range on the freshness index.
        .bind(fresh_from.as_deref().unwrap_or("9999"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Failed keys that are not due yet (the failures table is small next to the input).
        let failed_not_due: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM failures f JOIN input_keys i ON i.chat_id = f.key
             WHERE NOT ({FAILURE_IS_DUE})"
        ))
        .bind(policy.only_failed)
        .bind(&policy.now)
        .bind(&policy.permanent_retry_before)
        .fetch_one(&mut *tx)
        .await?;
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM input_keys")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        (never_fetched, retry, stale, failed_not_due, staged)
        });
        let mut counts = PlanCounts {
            never_fetched,
            retry,
            stale,
            failed_not_due: failed_not_due as u64,
            skipped_fresh: 0,
        };
        // With --only-failed, keys without a failure row are neither due nor fresh: skipped all the same.
        counts.skipped_fresh = (staged as u64).saturating_sub(counts.due() + counts.failed_not_due);
        Ok(counts)
    }

    /// The next `limit` due keys after position `after`.
    pub(crate) async fn page(&mut self, after: i64, limit: i64) -> Result<Vec<DueKey>, StoreError> {
        const PAGE: &str =
            "SELECT seq, chat_id, phone FROM due_keys WHERE seq > $1 ORDER BY seq LIMIT $2";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(PAGE).bind(after).bind(limit).fetch_all(c).await?;
            rows.into_iter()
                .map(|r| DueKey {
                    seq: r.get(0),
                    chat_id: r.get(1),
                    phone: r.get(2),
                })
                .collect()
        }))
    }
}
