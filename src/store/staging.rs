//! Staging: the normalised input, appended to a temporary table on the planner's connection as
//! it is read, then kept once per key for planning. Invalid values are recorded as failures as
//! they come, and each row's link too (see [`super::links`]).
//!
//! Memory stays flat whatever the input size: the set work (de-duplication, joins against the
//! store, ordering) happens in the database.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::conn::{on_conn, Conn};
use super::plan::StagedKeys;
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

/// The input as it is read, on a connection of its own (its temporary tables live there).
pub(crate) struct Stager {
    pub(super) conn: Conn,
}

impl Stager {
    pub(crate) async fn new(store: &Store) -> Result<Stager, StoreError> {
        let mut conn = store.connect().await?;
        // Keys are appended as they come (CRM exports are in no order), and de-duplicated by one
        // sort at the end: inserting a million random keys into an index page by page is what
        // made planning grow faster than its input.
        let create = conn.dialect().create_staged_keys;
        on_conn!(&mut conn, c => {
            sqlx::query(create).execute(c).await?;
        });
        Ok(Stager { conn })
    }

    /// Adds valid keys (duplicates too: [`Stager::finish`] keeps each key once).
    pub(crate) async fn stage(&mut self, keys: &[InputKey]) -> Result<(), StoreError> {
        on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::new("INSERT INTO staged_keys (chat_id, phone, line) ");
                q.push_values(chunk, |mut row, key| {
                    row.push_bind(key.chat_id.as_str())
                        .push_bind(key.phone.as_deref())
                        .push_bind(key.line as i64);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends staging: each key is kept once, with its first line (batches arrive in input order).
    /// Returns the keys, and how many distinct ones there are.
    pub(crate) async fn finish(mut self) -> Result<(StagedKeys, u64), StoreError> {
        let statements = self.conn.dialect().finish_staging;
        let n: i64 = on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            for statement in statements {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            sqlx::query_scalar("SELECT COUNT(*) FROM input_keys")
                .fetch_one(c)
                .await?
        });
        Ok((StagedKeys { conn: self.conn }, n as u64))
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
}
