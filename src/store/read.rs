//! Reading the store for people: the figures of `status` and `failures`, the demo's sample rows,
//! and whole tables for CSV export. Read-only; the formatting lives with the commands.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sqlx::Row;

use super::conn::{on_conn, Conn};
use super::ledger::{MinuteRow, RunCounts, RunOutcome, RunRecord, RunSummary};
use super::{postgres, sqlite, StoreError, StoreLocation};
use crate::normalise::{format_time, parse_time};

/// A read-only view of an existing store (for `status`, `failures` and the demo).
pub(crate) struct StoreReader {
    pub(super) conn: Conn,
}

/// Contacts at a glance.
pub(crate) struct Overview {
    pub(crate) contacts: i64,
    pub(crate) fresh: i64,
    pub(crate) products: i64,
    pub(crate) oldest: Option<DateTime<Utc>>,
    pub(crate) newest: Option<DateTime<Utc>>,
}

/// Failed keys of one reason and kind.
pub(crate) struct FailureCount {
    pub(crate) reason: String,
    pub(crate) permanent: bool,
    pub(crate) count: i64,
}

/// One row of `failures`.
pub(crate) struct FailureRow {
    pub(crate) reason: String,
    pub(crate) key: String,
    pub(crate) message: String,
    pub(crate) http_status: Option<i64>,
    pub(crate) attempts: i64,
    pub(crate) first_failed_at: String,
    pub(crate) last_attempt_at: String,
    pub(crate) next_due_at: String,
    pub(crate) permanent: bool,
}

/// A contact as the demo shows it.
pub(crate) struct SampleContact {
    pub(crate) chat_id: String,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) last_seen_at: String,
    pub(crate) products: i64,
}

impl StoreReader {
    /// Opens an existing store read-only.
    pub(crate) async fn open(location: &StoreLocation) -> Result<StoreReader, StoreError> {
        let conn = match location {
            StoreLocation::Sqlite(path) => Conn::Sqlite(sqlite::open_read_only(path).await?),
            StoreLocation::Postgres { url, schema } => {
                Conn::Postgres(postgres::connect_existing(url, schema).await?)
            }
        };
        Ok(StoreReader { conn })
    }

    /// The connection, when the store is in PostgreSQL (which alone has workers to show).
    pub(crate) fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.conn {
            Conn::Postgres(c) => Some(c),
            Conn::Sqlite(_) => None,
        }
    }

    /// Contact counts; contacts fetched at or after `fresh_from` are fresh.
    pub(crate) async fn overview(
        &mut self,
        fresh_from: DateTime<Utc>,
    ) -> Result<Overview, StoreError> {
        const SQL: &str = "SELECT COUNT(*),
                    CAST(COALESCE(SUM(CASE WHEN fetched_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT),
                    MIN(fetched_at), MAX(fetched_at), (SELECT COUNT(*) FROM products)
             FROM contacts";
        Ok(on_conn!(&mut self.conn, c => {
            let row = sqlx::query(SQL).bind(format_time(fresh_from)).fetch_one(c).await?;
            let time = |i: usize| row.get::<Option<String>, _>(i).as_deref().and_then(parse_time);
            Overview {
                contacts: row.get(0),
                fresh: row.get(1),
                oldest: time(2),
                newest: time(3),
                products: row.get(4),
            }
        }))
    }

    /// Run `run_id`'s calls per instance and minute, in order.
    pub(crate) async fn run_minutes(&mut self, run_id: i64) -> Result<Vec<MinuteRow>, StoreError> {
        const SQL: &str = "SELECT instance, minute, calls, http_429, spacing_ms FROM run_minutes
             WHERE run_id = $1 ORDER BY instance, minute";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).bind(run_id).fetch_all(c).await?;
            rows.iter()
                .map(|r| MinuteRow {
                    instance: r.get(0),
                    minute: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                    calls: r.get::<i64, _>(2).max(0) as u64,
                    http_429: r.get::<i64, _>(3).max(0) as u64,
                    spacing_ms: r.get(4),
                })
                .collect()
        }))
    }

    /// How many contacts were last fetched at or after each of `bounds` (newest bound first),
    /// and in all.
    pub(crate) async fn fetched_since(
        &mut self,
        bounds: &[DateTime<Utc>],
    ) -> Result<(Vec<i64>, i64), StoreError> {
        let mut sql = String::from("SELECT COUNT(*)");
        for i in 1..=bounds.len() {
            sql.push_str(&format!(
                ", CAST(COALESCE(SUM(CASE WHEN fetched_at >= ${i} THEN 1 ELSE 0 END), 0) AS BIGINT)"
            ));
        }
        sql.push_str(" FROM contacts");
        Ok(on_conn!(&mut self.conn, c => {
            let mut q = sqlx::query(&sql);
            for bound in bounds {
                q = q.bind(format_time(*bound));
            }
            let row = q.fetch_one(c).await?;
            ((1..=bounds.len()).map(|i| row.get(i)).collect(), row.get(0))
        }))
    }

    /// The input rows of every source by status (`enriched`, `failed`, `invalid`, `pending`).
    pub(crate) async fn row_statuses(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        const SQL: &str = "SELECT status, COUNT(*) FROM enriched GROUP BY status ORDER BY status";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).fetch_all(c).await?;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        }))
    }

    /// When the last run that completed ended.
    pub(crate) async fn last_success(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        const SQL: &str = "SELECT MAX(finished_at) FROM runs WHERE outcome = 'completed'";
        let at: Option<String> =
            on_conn!(&mut self.conn, c => sqlx::query_scalar(SQL).fetch_one(c).await?);
        Ok(at.as_deref().and_then(parse_time))
    }

    /// Failed keys counted by reason and kind, most common first.
    pub(crate) async fn failure_counts(&mut self) -> Result<Vec<FailureCount>, StoreError> {
        const SQL: &str = "SELECT reason, permanent, COUNT(*) FROM failures
             GROUP BY reason, permanent ORDER BY COUNT(*) DESC";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).fetch_all(c).await?;
            rows.iter()
                .map(|r| FailureCount {
                    reason: r.get(0),
                    permanent: r.get::<i64, _>(1) != 0,
                    count: r.get(2),
                })
                .collect()
        }))
    }

    /// The last `n` runs, newest first.
    pub(crate) async fn last_runs(&mut self, n: i64) -> Result<Vec<RunRecord>, StoreError> {
        const SQL: &str = "SELECT id, started_at, finished_at, outcome, input_rows, invalid,
                    duplicates, skipped_fresh, planned, enriched, failed, requests, http_429,
                    retries, options, summary
             FROM runs ORDER BY id DESC LIMIT $1";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).bind(n).fetch_all(c).await?;
            rows.iter()
                .map(|r| {
                    let count = |i: usize| r.get::<Option<i64>, _>(i).unwrap_or(0) as u64;
                    let text = |i: usize| r.get::<Option<String>, _>(i);
                    let summary: Option<RunSummary> =
                        text(15).and_then(|s| serde_json::from_str(&s).ok());
                    // What a run found changed is in its summary only.
                    let found = summary.as_ref().map(|s| s.counts.clone()).unwrap_or_default();
                    RunRecord {
                        id: r.get(0),
                        started_at: text(1).as_deref().and_then(parse_time).unwrap_or_default(),
                        finished_at: text(2).as_deref().and_then(parse_time),
                        outcome: text(3).as_deref().and_then(RunOutcome::parse),
                        counts: RunCounts {
                            input_rows: count(4),
                            invalid: count(5),
                            duplicates: count(6),
                            skipped_fresh: count(7),
                            suppressed: found.suppressed,
                            purged: found.purged,
                            planned: count(8),
                            enriched: count(9),
                            failed: count(10),
                            checks: found.checks,
                            resolved: found.resolved,
                            requests: count(11),
                            http_429: count(12),
                            retries: count(13),
                            new: found.new,
                            changed: found.changed,
                            unchanged: found.unchanged,
                        },
                        options: text(14).and_then(|s| serde_json::from_str(&s).ok()),
                        summary,
                    }
                })
                .collect()
        }))
    }

    /// When run `id` began; `None` when the store has no such run.
    pub(crate) async fn run_started_at(
        &mut self,
        id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        const SQL: &str = "SELECT started_at FROM runs WHERE id = $1";
        let at: Option<String> = on_conn!(&mut self.conn, c => sqlx::query_scalar(SQL).bind(id).fetch_optional(c).await?);
        Ok(at.as_deref().and_then(parse_time))
    }

    /// Every failed key, grouped by reason (most common reason first).
    pub(crate) async fn failures(&mut self) -> Result<Vec<FailureRow>, StoreError> {
        const SQL: &str = "SELECT f.reason, f.key, f.message, f.http_status, f.attempts,
                    f.first_failed_at, f.last_attempt_at, f.next_due_at, f.permanent
             FROM failures f
             JOIN (SELECT reason, COUNT(*) AS n FROM failures GROUP BY reason) g ON g.reason = f.reason
             ORDER BY g.n DESC, f.reason, f.key";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).fetch_all(c).await?;
            rows.iter()
                .map(|r| FailureRow {
                    reason: r.get(0),
                    key: r.get(1),
                    message: r.get(2),
                    http_status: r.get(3),
                    attempts: r.get(4),
                    first_failed_at: r.get(5),
                    last_attempt_at: r.get(6),
                    next_due_at: r.get(7),
                    permanent: r.get::<i64, _>(8) != 0,
                })
                .collect()
        }))
    }

    /// Up to `n` contacts, business accounts first.
    pub(crate) async fn sample_contacts(
        &mut self,
        n: i64,
    ) -> Result<Vec<SampleContact>, StoreError> {
        const SQL: &str = "SELECT c.chat_id, COALESCE(c.name, ''), COALESCE(c.category, ''),
                    COALESCE(c.last_seen_at, ''),
                    (SELECT COUNT(*) FROM products p WHERE p.chat_id = c.chat_id)
             FROM contacts c ORDER BY c.is_business DESC, c.chat_id LIMIT $1";
        Ok(on_conn!(&mut self.conn, c => {
            let rows = sqlx::query(SQL).bind(n).fetch_all(c).await?;
            rows.iter()
                .map(|r| SampleContact {
                    chat_id: r.get(0),
                    name: r.get(1),
                    category: r.get(2),
                    last_seen_at: r.get(3),
                    products: r.get(4),
                })
                .collect()
        }))
    }
}

/// The tables exported to CSV, each with the order of its rows.
pub(crate) const EXPORTED_TABLES: [ExportedTable; 3] = [
    ExportedTable {
        name: "contacts",
        order: "chat_id",
        changed_since: Some("changed_at >= $1"),
    },
    ExportedTable {
        name: "products",
        order: "chat_id, position",
        changed_since: Some("chat_id IN (SELECT chat_id FROM contacts WHERE changed_at >= $1)"),
    },
    ExportedTable {
        name: "failures",
        order: "key",
        changed_since: None,
    },
];

/// A table the export writes.
pub(crate) struct ExportedTable {
    pub(crate) name: &'static str,
    /// The rows' order.
    pub(crate) order: &'static str,
    /// Its rows that changed since a time (`$1`); `None`: not part of a delta export.
    pub(crate) changed_since: Option<&'static str>,
}

/// The columns of the `enriched` view that follow a row's own columns in `enriched.csv`.
pub(crate) const ENRICHED_COLUMNS: [&str; 15] = [
    "chat_id",
    "status",
    "error",
    "name",
    "contact_name",
    "email",
    "category",
    "description",
    "avatar_url",
    "is_business",
    "last_seen_at",
    "products",
    "fetched_at",
    "changed_at",
    "change",
];

/// One row of the `enriched` view, with its place in the input.
pub(crate) struct EnrichedRow {
    pub(crate) position: u64,
    /// [`ENRICHED_COLUMNS`], as text (NULL as empty).
    pub(crate) cells: Vec<String>,
}

/// A table dump stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DumpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Sink(std::io::Error),
}

impl StoreReader {
    /// Streams `table` to `sink`: its column names first, then every row (with `since`, only the
    /// rows that changed since then) with each cell as text (NULL as empty). Returns the number
    /// of rows.
    pub(crate) async fn dump_table(
        &mut self,
        table: &ExportedTable,
        since: Option<DateTime<Utc>>,
        mut sink: impl FnMut(&[String]) -> std::io::Result<()>,
    ) -> Result<u64, DumpError> {
        let (name, order) = (table.name, table.order);
        let filter = match (since, table.changed_since) {
            (Some(at), Some(condition)) => Some((format!(" WHERE {condition}"), format_time(at))),
            _ => None,
        };
        let columns_sql = self.conn.dialect().table_columns;
        on_conn!(&mut self.conn, c => {
            let columns: Vec<String> = sqlx::query_scalar(columns_sql)
                .bind(name)
                .fetch_all(&mut *c)
                .await
                .map_err(StoreError::from)?;
            sink(&columns).map_err(DumpError::Sink)?;
            let condition = filter.as_ref().map_or("", |(sql, _)| sql.as_str());
            let sql = format!("SELECT {} FROM {name}{condition} ORDER BY {order}", as_text(&columns));
            let query = sqlx::query(&sql);
            let query = match &filter {
                Some((_, at)) => query.bind(at),
                None => query,
            };
            let mut rows = query.fetch(c);
            let mut count = 0;
            while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                let record = text_cells!(&row, 0..columns.len())?;
                sink(&record).map_err(DumpError::Sink)?;
                count += 1;
            }
            Ok(count)
        })
    }

    /// The `enriched` rows of `source`, in input order; with `since`, only those whose contact
    /// changed since then.
    pub(crate) fn enriched_rows<'a>(
        &'a mut self,
        source: &'a str,
        since: Option<DateTime<Utc>>,
    ) -> futures::stream::BoxStream<'a, Result<EnrichedRow, StoreError>> {
        let since = since.map(format_time);
        let sql = match since {
            Some(_) => ENRICHED_CHANGED_IN_ORDER.as_str(),
            None => ENRICHED_IN_ORDER.as_str(),
        };
        on_conn!(&mut self.conn, c => {
            let query = sqlx::query(sql).bind(source);
            let query = match since {
                Some(at) => query.bind(at),
                None => query,
            };
            query.fetch(c)
            .map(|row| {
                let row = row?;
                let cells = text_cells!(&row, 1..=ENRICHED_COLUMNS.len())?;
                Ok(EnrichedRow {
                    position: row.try_get::<i64, _>(0)? as u64,
                    cells,
                })
            })
            .boxed()
        })
    }
}

/// [`ENRICHED_COLUMNS`] of one source (`$1`), after each row's place in the input, in input
/// order.
static ENRICHED_IN_ORDER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT position, {} FROM enriched WHERE source = $1 ORDER BY position",
        as_text(&ENRICHED_COLUMNS)
    )
});

/// [`ENRICHED_IN_ORDER`], only the rows whose contact changed at or after `$2`.
static ENRICHED_CHANGED_IN_ORDER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT position, {} FROM enriched WHERE source = $1 AND changed_at >= $2 ORDER BY position",
        as_text(&ENRICHED_COLUMNS)
    )
});

/// `columns` selected as text.
fn as_text(columns: &[impl AsRef<str>]) -> String {
    columns
        .iter()
        .map(|c| format!("CAST({} AS TEXT)", c.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cells `columns` of `row` (a row of either engine), as text (NULL as empty).
macro_rules! text_cells {
    ($row:expr, $columns:expr) => {
        $columns
            .map(|i| Ok($row.try_get::<Option<String>, _>(i)?.unwrap_or_default()))
            .collect::<Result<Vec<String>, StoreError>>()
    };
}
use text_cells;
