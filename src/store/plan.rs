//! Planning: on the staged input, the database decides which keys are due (never fetched,
//! failed and due again, stale), in priority order, and the plan is handed out: read a page at
//! a time by its run, or published to the shared queue.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::conn::{on_conn, Conn};
use super::StoreError;
use crate::normalise::{format_time, parse_time};
use crate::refresh::{self, Candidate, Checks};

/// Which keys are due.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) now: DateTime<Utc>,
    /// A contact fetched at or after this time is fresh and skipped (`--max-age`); `None`:
    /// nothing is fresh by age. (Contacts fetched by runs that are not over are fresh too: see
    /// [`StagedKeys::plan`].)
    pub(crate) fresh_from: Option<DateTime<Utc>>,
    /// When this run began (`None` for a dry run, which has no row in the ledger).
    pub(crate) run_started_at: Option<DateTime<Utc>>,
    /// A permanently failed key last tried at or before this time is due again.
    pub(crate) permanent_retry_before: DateTime<Utc>,
    /// Only keys that have a failure row are due.
    pub(crate) only_failed: bool,
    /// Stale contacts in the order that keeps the most fresh for this budget, instead of the
    /// stalest first (`--refresh adaptive` with a budget).
    pub(crate) adaptive: Option<Adaptive>,
}

/// The budget `--refresh adaptive` spreads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Adaptive {
    /// Calls this run may make.
    pub(crate) calls: u64,
    /// Days between two runs (the budget is a daily one for the optimum).
    pub(crate) run_interval_days: f64,
}

impl Adaptive {
    /// The refreshes a day the budget leaves for stale contacts after `first` keys that come
    /// before them (never fetched, failed and due again).
    fn daily_budget(&self, first: u64) -> f64 {
        self.left(first) as f64 / self.run_interval_days
    }

    /// The calls left for stale contacts after `first` keys that come before them.
    fn left(&self, first: u64) -> usize {
        usize::try_from(self.calls.saturating_sub(first)).unwrap_or(usize::MAX)
    }
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

/// The input's keys, staged once each, on the planner's connection.
pub(crate) struct StagedKeys {
    pub(super) conn: Conn,
}

/// The due keys of one plan (a temporary table on its connection), in the order to fetch them.
pub(crate) struct DuePlan {
    pub(super) conn: Conn,
    /// The snapshot the plan saw (PostgreSQL), for publishing its keys.
    pub(super) snapshot: Option<String>,
}

/// The never-fetched due keys, in input order ($1: --only-failed); `walk`: how the input keys
/// are walked (see [`super::dialect::Dialect::walk_keys_in_key_order`]).
fn never_fetched(walk: &str) -> String {
    format!(
        "INSERT INTO due_keys (chat_id, phone)
         SELECT i.chat_id, i.phone FROM input_keys i {walk}
         WHERE NOT $1
           AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.chat_id = i.chat_id)
           AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.key = i.chat_id)
         ORDER BY i.line"
    )
}

/// The failed keys due again, oldest attempt first (binds as [`FAILURE_IS_DUE`]).
static RETRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO due_keys (chat_id, phone)
         SELECT i.chat_id, i.phone FROM failures f JOIN input_keys i ON i.chat_id = f.key
         WHERE {FAILURE_IS_DUE}
         ORDER BY f.last_attempt_at, i.line"
    )
});

/// The stale contacts, stalest first ($1: --only-failed, $2: fetched before this is stale).
const STALE: &str = "INSERT INTO due_keys (chat_id, phone)
     SELECT c.chat_id, i.phone FROM contacts c JOIN input_keys i ON i.chat_id = c.chat_id
     WHERE NOT $1 AND c.fetched_at < $2
       AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.key = c.chat_id)
     ORDER BY c.fetched_at";

/// Failed keys that are not due yet (the failures table is small next to the input).
static FAILED_NOT_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COUNT(*) FROM failures f JOIN input_keys i ON i.chat_id = f.key
         WHERE NOT ({FAILURE_IS_DUE})"
    )
});

/// The fetch time from which a contact is fresh (on `$conn`, in the plan's snapshot): younger
/// than `--max-age`, or fetched by a run that is not over ([`super::dialect::Dialect`]'s
/// `runs_not_over`). Under `--refresh adaptive` each run plans afresh: what a run stopped by
/// its budget fetched is not skipped as fresh, but comes last (its age is nearly nothing).
macro_rules! fresh_from {
    ($conn:expr, $dialect:expr, $policy:expr) => {{
        let not_over: Option<String> = match $policy.adaptive {
            Some(_) => None,
            None => {
                sqlx::query_scalar($dialect.runs_not_over)
                    .bind($policy.run_started_at.map(format_time))
                    .fetch_one($conn)
                    .await?
            }
        };
        $policy
            .fresh_from
            .map(format_time)
            .into_iter()
            .chain(not_over)
            .min()
    }};
}

/// Runs the statement `$sql` with its binds on `$conn`; the number of rows it added.
macro_rules! rows_added {
    ($conn:expr, $sql:expr $(, $bind:expr)*) => {
        sqlx::query($sql)$(.bind($bind))*.execute($conn).await?.rows_affected()
    };
}

/// The stale contacts with what their checks found ($1: --only-failed, $2: stale before).
const STALE_CANDIDATES: &str = "SELECT c.chat_id, i.phone, c.fetched_at, c.fetches_changed,
       c.changed_seconds, c.fetches_unchanged, c.unchanged_seconds
     FROM contacts c JOIN input_keys i ON i.chat_id = c.chat_id
     WHERE NOT $1 AND c.fetched_at < $2
       AND NOT EXISTS (SELECT 1 FROM failures f WHERE f.key = c.chat_id)";

/// One row of [`STALE_CANDIDATES`].
type StaleRow = (String, Option<String>, String, i64, f64, i64, f64);

/// The stale contacts not queued yet, stalest first (binds as [`STALE`]).
static STALE_REST: LazyLock<String> = LazyLock::new(|| {
    STALE.replace(
        "ORDER BY c.fetched_at",
        "AND NOT EXISTS (SELECT 1 FROM due_keys d WHERE d.chat_id = c.chat_id)
     ORDER BY c.fetched_at",
    )
});

/// Streams [`STALE_CANDIDATES`] on `$conn` through `$each` (a closure taking a [`StaleRow`]).
macro_rules! each_stale {
    ($conn:expr, $policy:expr, $stale_before:expr, $each:expr) => {{
        let mut rows = sqlx::query_as::<_, StaleRow>(STALE_CANDIDATES)
            .bind($policy.only_failed)
            .bind($stale_before)
            .fetch(&mut *$conn);
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            $each(row);
        }
    }};
}

/// Queues the stale contacts on `$conn`: first the `$calls` whose refresh keeps the most fresh
/// for `$budget` refreshes a day ([`crate::refresh`]), found in three passes so that memory
/// holds only them; then the rest, stalest first. Evaluates to how many were queued.
macro_rules! stale_in_order {
    ($conn:expr, $policy:expr, $stale_before:expr, $budget:expr, $calls:expr) => {{
        let mut record = refresh::Record::default();
        each_stale!($conn, $policy, $stale_before, |row: StaleRow| record
            .add(&checks(&row)));
        let mut spread = refresh::Spread::new(record.pooled());
        each_stale!($conn, $policy, $stale_before, |row: StaleRow| spread
            .add(&checks(&row)));
        let priorities = spread.priorities($budget, $policy.now);
        let mut top = refresh::Top::new($calls);
        each_stale!($conn, $policy, $stale_before, |row: StaleRow| {
            let rank = priorities.of(&candidate(&row));
            top.push(rank, (row.0, row.1));
        });
        let first = top.into_sorted();
        for chunk in first.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO due_keys (chat_id, phone) ");
            q.push_values(chunk, |mut row, key| {
                row.push_bind(&key.0).push_bind(&key.1);
            });
            q.build().execute(&mut *$conn).await?;
        }
        // The rest is an anti-join against the keys queued: by an index, not a scan per row.
        sqlx::query("CREATE INDEX due_keys_by_key ON due_keys (chat_id)")
            .execute(&mut *$conn)
            .await?;
        let only_failed = $policy.only_failed;
        first.len() as u64 + rows_added!(&mut *$conn, &STALE_REST, only_failed, $stale_before)
    }};
}

/// Rows per multi-row INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;

/// A stale contact as the adaptive order sees it.
fn candidate(row: &StaleRow) -> Candidate {
    Candidate {
        fetched_at: parse_time(&row.2).unwrap_or_default(),
        checks: checks(row),
    }
}

/// What a stale contact's checks found (the first two passes need no more: its time is not
/// parsed there).
fn checks(row: &StaleRow) -> Checks {
    let days = |seconds: f64| seconds / 86_400.0;
    Checks {
        changed: u32::try_from(row.3).unwrap_or(u32::MAX),
        changed_days: days(row.4),
        unchanged: u32::try_from(row.5).unwrap_or(u32::MAX),
        unchanged_days: days(row.6),
    }
}

impl StagedKeys {
    /// Queues the due keys in priority order: never fetched (in input order), then failed keys
    /// whose retry time has come (oldest attempt first), then stale contacts (stalest first, by
    /// walking the freshness index, so no sort is needed however big the store is).
    ///
    /// A contact fetched since the start of a run that is not over is fresh, whatever
    /// `--max-age` says: a resumed run fetches nothing an interrupted one committed, and workers
    /// of a shared store that run at the same time fetch nothing another has fetched. Those runs
    /// are read in the plan's own snapshot (see [`super::conn::Dialect::runs_not_over`]), so a
    /// worker that began before the snapshot is seen with everything it committed.
    pub(crate) async fn plan(
        mut self,
        policy: &Policy,
    ) -> Result<(DuePlan, PlanCounts), StoreError> {
        let dialect = self.conn.dialect();
        let now = format_time(policy.now);
        let retry_before = format_time(policy.permanent_retry_before);
        let (snapshot, counts, staged) = on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            if let Some(isolation) = dialect.plan_isolation {
                sqlx::query(isolation).execute(&mut *tx).await?;
            }
            let snapshot: Option<String> = match dialect.plan_snapshot {
                Some(sql) => Some(sqlx::query_scalar(sql).fetch_one(&mut *tx).await?),
                None => None,
            };
            let fresh_from = fresh_from!(&mut *tx, dialect, policy);
            sqlx::query("DROP TABLE IF EXISTS due_keys").execute(&mut *tx).await?;
            sqlx::query(dialect.create_due_keys).execute(&mut *tx).await?;
            let has_contacts: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM contacts)")
                .fetch_one(&mut *tx)
                .await?;
            let walk = if has_contacts { dialect.walk_keys_in_key_order } else { "" };
            let never_fetched = rows_added!(&mut *tx, &never_fetched(walk), policy.only_failed);
            let retry = rows_added!(&mut *tx, &RETRY, policy.only_failed, &now, &retry_before);
            // Without a freshness bound every contact is stale: a bound after every timestamp
            // keeps the range on the freshness index.
            let stale_before = fresh_from.as_deref().unwrap_or("9999");
            let stale = match policy.adaptive {
                None => rows_added!(&mut *tx, STALE, policy.only_failed, stale_before),
                Some(adaptive) => {
                    let first = never_fetched + retry;
                    let (budget, calls) = (adaptive.daily_budget(first), adaptive.left(first));
                    stale_in_order!(&mut *tx, policy, stale_before, budget, calls)
                }
            };
            let failed_not_due: i64 = sqlx::query_scalar(&FAILED_NOT_DUE)
                .bind(policy.only_failed)
                .bind(&now)
                .bind(&retry_before)
                .fetch_one(&mut *tx)
                .await?;
            let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM input_keys")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            let counts = PlanCounts { never_fetched, retry, stale, failed_not_due: failed_not_due as u64, skipped_fresh: 0 };
            (snapshot, counts, staged as u64)
        });
        // With --only-failed, keys without a failure row are neither due nor fresh: skipped all
        // the same.
        let skipped_fresh = staged.saturating_sub(counts.due() + counts.failed_not_due);
        let plan = DuePlan {
            conn: self.conn,
            snapshot,
        };
        Ok((
            plan,
            PlanCounts {
                skipped_fresh,
                ..counts
            },
        ))
    }
}

impl DuePlan {
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
