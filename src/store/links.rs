//! Row links: every input row read, with its own id and its chat id, in `input_rows`. Written by
//! the stager's connection while the input is staged; the `enriched` view joins them to results.
//!
//! Several workers may read the same source at once (a shared PostgreSQL store), so a link is
//! owned by the *latest read*, ordered by run id (runs are numbered as they begin):
//! - a row's link is written only over a link of the same or an earlier run
//!   (`WHERE input_rows.run_id <= excluded.run_id`), so a slow older reader never undoes a newer
//!   one, and a statement names each row once;
//! - after a complete read, a run deletes only the rows whose link is older than itself
//!   (`run_id < mine`): a row a later run has linked is that run's to keep or drop.
//!
//! Whatever the interleaving, each row read by the latest complete read has exactly one link,
//! from the latest run that read it, and rows no read saw since are removed by the next complete
//! read; `enriched`, built on `input_rows`, has one row per input row.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::conn::on_conn;

use super::staging::Stager;
use super::{last_per_key, StoreError};
use crate::normalise::format_time;

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 100;

/// One input row's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputLink {
    /// 1-based place in the input.
    pub(crate) position: u64,
    pub(crate) row_ref: String,
    /// `None` when the row could not be read.
    pub(crate) input_value: Option<String>,
    /// `None` when the value is not a valid id.
    pub(crate) chat_id: Option<String>,
    /// Why the value is not a valid id.
    pub(crate) error: Option<String>,
    /// The value is a person on the do-not-process list: the link keeps neither it nor its
    /// chat id.
    pub(crate) suppressed: bool,
}

/// Which source and run the links belong to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkOwner<'a> {
    pub(crate) source: &'a str,
    pub(crate) run_id: i64,
    pub(crate) seen_at: DateTime<Utc>,
}

impl Stager {
    /// Records (or updates) the links of one batch of rows. A row already linked by a later run
    /// (a worker that began reading after this one) keeps that run's link.
    pub(crate) async fn record_links(
        &mut self,
        owner: LinkOwner<'_>,
        links: &[InputLink],
    ) -> Result<(), StoreError> {
        let links = last_per_key(links, |l| l.row_ref.as_str());
        let seen_at = format_time(owner.seen_at);
        on_conn!(&mut self.conn, c => {
        let mut tx = sqlx::Connection::begin(c).await?;
        for chunk in links.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new(
                "INSERT INTO input_rows (source, row_ref, position, input_value, chat_id, error, \
                 run_id, seen_at, suppressed) ",
            );
            q.push_values(chunk, |mut row, link| {
                row.push_bind(owner.source)
                    .push_bind(link.row_ref.as_str())
                    .push_bind(link.position as i64)
                    .push_bind(link.input_value.as_deref())
                    .push_bind(link.chat_id.as_deref())
                    .push_bind(link.error.as_deref())
                    .push_bind(owner.run_id)
                    .push_bind(seen_at.as_str())
                    .push_bind(i64::from(link.suppressed));
            });
            q.push(
                " ON CONFLICT (source, row_ref) DO UPDATE SET position = excluded.position, \
                 input_value = excluded.input_value, chat_id = excluded.chat_id, \
                 error = excluded.error, run_id = excluded.run_id, seen_at = excluded.seen_at, \
                 suppressed = excluded.suppressed \
                 WHERE input_rows.run_id <= excluded.run_id",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        });
        Ok(())
    }

    /// After a complete read of `owner.source`: its rows that neither this run nor a later one
    /// saw are gone from it.
    pub(crate) async fn forget_unseen(&mut self, owner: LinkOwner<'_>) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM input_rows WHERE source = $1 AND run_id < $2";
        let gone = on_conn!(&mut self.conn, c => sqlx::query(SQL)
            .bind(owner.source)
            .bind(owner.run_id)
            .execute(c)
            .await?
            .rows_affected());
        Ok(gone)
    }
}
