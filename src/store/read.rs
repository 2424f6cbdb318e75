//! Reading the store for people: the figures of `status` and `failures`, the demo's sample rows,
//! and whole tables for CSV export. Read-only; the formatting lives with the commands.

use futures::{StreamExt, TryStreamExt};
use sqlx::{Row, SqliteConnection};

use super::ledger::{RunCounts, RunRecord};
use super::{open_read_only, StoreError};

/// A read-only view of an existing store (for `status`, `failures` and the demo).
pub(crate) struct StoreReader {
    conn: SqliteConnection,
}

/// Contacts at a glance.
pub(crate) struct Overview {
    pub(crate) contacts: i64,
    pub(crate) fresh: i64,
    pub(crate) products: i64,
    pub(crate) oldest: Option<String>,
    pub(crate) newest: Option<String>,
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
    pub(crate) async fn open(path: &std::path::Path) -> Result<StoreReader, StoreError> {
        Ok(StoreReader {
            conn: open_read_only(path).await?,
        })
    }

    /// Contact counts; contacts fetched at or after `fresh_from` are fresh.
    pub(crate) async fn overview(&mut self, fresh_from: &str) -> Result<Overview, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN fetched_at >= $1 THEN 1 ELSE 0 END), 0),
                    MIN(fetched_at), MAX(fetched_at),
                    (SELECT COUNT(*) FROM products)
             FROM contacts",
        )
        .bind(fresh_from)
        .fetch_one(&mut self.conn)
        .await?;
        Ok(Overview {
            contacts: row.get(0),
            fresh: row.get(1),
            oldest: row.get(2),
            newest: row.get(3),
            products: row.get(4),
        })
    }

    /// Failed keys counted by reason and kind, most common first.
    pub(crate) async fn failure_counts(&mut self) -> Result<Vec<FailureCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT reason, permanent, COUNT(*) FROM failures GROUP BY reason, permanent ORDER BY COUNT(*) DESC",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| FailureCount {
                reason: r.get(0),
                permanent: r.get(1),
                count: r.get(2),
            })
            .collect())
    }

    /// The last `n` runs, newest first.
    pub(crate) async fn last_runs(&mut self, n: i64) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, started_at, finished_at, outcome, input_rows, invalid, duplicates,
                    skipped_fresh, planned, enriched, failed, requests, http_429, retries,
                    options, summary
             FROM runs ORDER BY id DESC LIMIT $1",
        )
        .bind(n)
        .fetch_all(&mut self.conn)
        .await?;
        let count =
            |r: &sqlx::sqlite::SqliteRow, i: usize| r.get::<Option<i64>, _>(i).unwrap_or(0) as u64;
        let json = |r: &sqlx::sqlite::SqliteRow, i: usize| r.get::<Option<String>, _>(i);
        Ok(rows
            .iter()
            .map(|r| RunRecord {
                id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                outcome: r.get(3),
                counts: RunCounts {
                    input_rows: count(r, 4),
                    invalid: count(r, 5),
                    duplicates: count(r, 6),
                    skipped_fresh: count(r, 7),
                    planned: count(r, 8),
                    enriched: count(r, 9),
                    failed: count(r, 10),
                    requests: count(r, 11),
                    http_429: count(r, 12),
                    retries: count(r, 13),
                },
                options: json(r, 14).and_then(|s| serde_json::from_str(&s).ok()),
                summary: json(r, 15).and_then(|s| serde_json::from_str(&s).ok()),
            })
            .collect())
    }

    /// Every failed key, grouped by reason (most common reason first).
    pub(crate) async fn failures(&mut self) -> Result<Vec<FailureRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.reason, f.key, f.message, f.http_status, f.attempts, f.first_failed_at,
                    f.last_attempt_at, f.next_due_at, f.permanent
             FROM failures f
             JOIN (SELECT reason, COUNT(*) AS n FROM failures GROUP BY reason) g ON g.reason = f.reason
             ORDER BY g.n DESC, f.reason, f.key",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| FailureRow {
                reason: r.get(0),
                key: r.get(1),
                message: r.get(2),
                http_status: r.get(3),
                attempts: r.get(4),
                first_failed_at: r.get(5),
                last_attempt_at: r.get(6),
                next_due_at: r.get(7),
                permanent: r.get(8),
            })
            .collect())
    }

    /// Up to `n` contacts, business accounts first.
    pub(crate) async fn sample_contacts(
        &mut self,
        n: i64,
    ) -> Result<Vec<SampleContact>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.chat_id, COALESCE(c.name, ''), COALESCE(c.category, ''), COALESCE(c.last_seen_at, ''),
                    (SELECT COUNT(*) FROM products p WHERE p.chat_id = c.chat_id)
             FROM contacts c ORDER BY c.is_business DESC, c.chat_id LIMIT $1",
        )
        .bind(n)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SampleContact {
                chat_id: r.get(0),
                name: r.get(1),
                category: r.get(2),
                last_seen_at: r.get(3),
                products: r.get(4),
            })
            .collect())
    }
}

/// The tables exported to CSV, each with the order of its rows.
pub(crate) const EXPORTED_TABLES: [(&str, &str); 3] = [
    ("contacts", "chat_id"),
    ("products", "chat_id, position"),
    ("failures", "key"),
];

/// The columns of the `enriched` view that follow a row's own columns in `enriched.csv`.
pub(crate) const ENRICHED_COLUMNS: [&str; 13] = [
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
    /// Streams `table` (one of [`EXPORTED_TABLES`]) to `sink`: its column names first, then
    /// every row with each cell as text (NULL as empty). Returns the number of rows.
    pub(crate) async fn dump_table(
        &mut self,
        table: &str,
        order: &str,
        mut sink: impl FnMut(&[String]) -> std::io::Result<()>,
    ) -> Result<u64, DumpError> {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(table)
                .fetch_all(&mut self.conn)
                .await
                .map_err(StoreError::from)?;
        sink(&columns).map_err(DumpError::Sink)?;
        let sql = format!("SELECT {} FROM {table} ORDER BY {order}", as_text(&columns));
        let mut rows = sqlx::query(&sql).fetch(&mut self.conn);
        let mut count = 0;
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            let record = text_cells(&row, 0..columns.len())?;
            sink(&record).map_err(DumpError::Sink)?;
            count += 1;
        }
        Ok(count)
    }

    /// The `enriched` rows of `source`, in input order.
    pub(crate) fn enriched_rows<'a>(
        &'a mut self,
        source: &'a str,
    ) -> impl futures::Stream<Item = Result<EnrichedRow, StoreError>> + 'a {
        sqlx::query(&ENRICHED_IN_ORDER)
            .bind(source)
            .fetch(&mut self.conn)
            .map(|row| {
                let row = row?;
                let cells = text_cells(&row, 1..=ENRICHED_COLUMNS.len())?;
                Ok(EnrichedRow {
                    position: row.try_get::<i64, _>(0)? as u64,
                    cells,
                })
            })
    }
}

/// [`ENRICHED_COLUMNS`] of one source, after each row's place in the input, in input order.
static ENRICHED_IN_ORDER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT position, {} FROM enriched WHERE source = $1 ORDER BY position",
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

/// The cells `columns` of `row`, as text (NULL as empty).
fn text_cells(
    row: &sqlx::sqlite::SqliteRow,
    columns: impl Iterator<Item = usize>,
) -> Result<Vec<String>, StoreError> {
    columns
        .map(|i| Ok(row.try_get::<Option<String>, _>(i)?.unwrap_or_default()))
        .collect()
}
