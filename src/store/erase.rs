//! Erasure: removing people from every table that holds them, in one transaction (`forget`,
//! and retention's `purge`), the do-not-process list kept beside them, and scrubbing a SQLite
//! file afterwards so that no copy of what was removed stays in its bytes.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::conn::{on_conn, Conn};
use super::{Store, StoreError};
use crate::normalise::format_time;
use crate::suppression::{SuppressionKey, SuppressionList};

/// Rows per multi-row INSERT statement.
const ROWS_PER_STATEMENT: usize = 200;

/// Reads the key of the list's hashes, kept in `greenrich_meta`.
pub(super) const READ_LIST_KEY: &str =
    "SELECT value FROM greenrich_meta WHERE key = 'suppression_key'";

/// Rows removed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Erased {
    pub(crate) contacts: u64,
    pub(crate) products: u64,
    pub(crate) changes: u64,
    pub(crate) failures: u64,
    pub(crate) row_links: u64,
    pub(crate) handles: u64,
    /// Keys of the shared work queue (PostgreSQL).
    pub(crate) queued: u64,
    /// Hashes added to the do-not-process list.
    pub(crate) suppressed: u64,
}

impl Erased {
    /// The counts as `forget` and `purge` print them.
    pub(crate) fn describe(&self) -> String {
        let mut parts = vec![
            format!("{} contacts", self.contacts),
            format!("{} products", self.products),
            format!("{} changes", self.changes),
            format!("{} failures", self.failures),
            format!("{} row links", self.row_links),
            format!("{} Telegram handles", self.handles),
        ];
        if self.queued > 0 {
            parts.push(format!("{} queued keys", self.queued));
        }
        parts.join(", ")
    }
}

/// The keys to erase, each once, on the erasing connection.
const CREATE_KEYS: &str = "CREATE TEMP TABLE erase_keys (key TEXT PRIMARY KEY)";

/// Adds the other side of every Telegram handle of the keys: a person's chat id brings the
/// phone numbers and usernames resolved to it, and a handle brings its chat id.
const FOLLOW_HANDLES: [&str; 2] = [
    "INSERT INTO erase_keys (key)
     SELECT DISTINCT h.chat_id FROM handles h JOIN erase_keys e ON e.key = h.handle
     WHERE NOT EXISTS (SELECT 1 FROM erase_keys x WHERE x.key = h.chat_id)",
    "INSERT INTO erase_keys (key)
     SELECT DISTINCT h.handle FROM handles h JOIN erase_keys e ON e.key = h.chat_id
     WHERE NOT EXISTS (SELECT 1 FROM erase_keys x WHERE x.key = h.handle)",
];

/// Retention's keys: contacts fetched, and keys last tried, before $1, that no input row read
/// since $1 names (by its chat id, or by a Telegram handle of it).
const NOT_MENTIONED_SINCE: &str = "INSERT INTO erase_keys (key)
     SELECT chat_id FROM contacts WHERE fetched_at < $1
     UNION SELECT key FROM failures WHERE last_attempt_at < $1
     EXCEPT SELECT chat_id FROM input_rows WHERE seen_at >= $1 AND chat_id IS NOT NULL
     EXCEPT SELECT h.chat_id FROM handles h JOIN input_rows r ON r.chat_id = h.handle
            WHERE r.seen_at >= $1";

/// Deletes the rows of the keys from one table; in the order a foreign key needs.
const DELETES: [&str; 6] = [
    "DELETE FROM products WHERE chat_id IN (SELECT key FROM erase_keys)",
    "DELETE FROM changes WHERE chat_id IN (SELECT key FROM erase_keys)",
    "DELETE FROM contacts WHERE chat_id IN (SELECT key FROM erase_keys)",
    "DELETE FROM failures WHERE key IN (SELECT key FROM erase_keys)",
    "DELETE FROM input_rows WHERE chat_id IN (SELECT key FROM erase_keys)",
    "DELETE FROM handles WHERE handle IN (SELECT key FROM erase_keys)
        OR chat_id IN (SELECT key FROM erase_keys)",
];
const DELETE_QUEUED: &str = "DELETE FROM work_queue WHERE key IN (SELECT key FROM erase_keys)";

/// Which keys an erasure removes.
pub(crate) enum Whom<'a> {
    /// These chat ids and Telegram handles.
    Keys(&'a [String]),
    /// Everyone no input has mentioned since this time, and row links read before it.
    NotMentionedSince(DateTime<Utc>),
}

/// The store's key for the list's hashes, drawn and kept on first use (in the caller's
/// transaction: two workers that race keep the same key).
macro_rules! list_key {
    ($tx:expr) => {{
        let existing: Option<String> = sqlx::query_scalar(READ_LIST_KEY).fetch_optional(&mut *$tx).await?;
        if existing.is_none() {
            let drawn = SuppressionKey::generate().map_err(|e| StoreError::Open {
                path: "the do-not-process list".into(),
                message: format!("no random key from the OS: {e}"),
            })?;
            sqlx::query("INSERT INTO greenrich_meta (key, value) VALUES ('suppression_key', $1) ON CONFLICT (key) DO NOTHING")
                .bind(drawn)
                .execute(&mut *$tx)
                .await?;
        }
        let text: String = sqlx::query_scalar(READ_LIST_KEY).fetch_one(&mut *$tx).await?;
        SuppressionKey::from_hex(&text).ok_or_else(|| StoreError::Open {
            path: "the do-not-process list".into(),
            message: "its key in greenrich_meta is not hex text".into(),
        })
    }};
}

/// Adds `$hashes` to the list (those already there stay as they are); evaluates to how many
/// were added.
macro_rules! insert_hashes {
    ($tx:expr, $hashes:expr, $at:expr) => {{
        let at = $at;
        let mut added = 0;
        for chunk in $hashes.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::new("INSERT INTO suppressed (key_hash, suppressed_at) ");
            q.push_values(chunk, |mut row, hash| {
                row.push_bind(hash.as_str()).push_bind(at.as_str());
            });
            q.push(" ON CONFLICT (key_hash) DO NOTHING");
            added += q.build().execute(&mut *$tx).await?.rows_affected();
        }
        added
    }};
}

/// Fills `erase_keys` with the keys of `$whom` on `$tx`; evaluates to the row links retention
/// erased by their age (none for named keys).
macro_rules! fill_keys {
    ($tx:expr, $whom:expr) => {{
        match $whom {
            Whom::Keys(keys) => {
                for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                    let mut q = QueryBuilder::new("INSERT INTO erase_keys (key) ");
                    q.push_values(chunk, |mut row, key| {
                        row.push_bind(key.as_str());
                    });
                    q.push(" ON CONFLICT (key) DO NOTHING");
                    q.build().execute(&mut *$tx).await?;
                }
                0
            }
            Whom::NotMentionedSince(cutoff) => {
                let cutoff = format_time(cutoff);
                sqlx::query(NOT_MENTIONED_SINCE)
                    .bind(&cutoff)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query("DELETE FROM input_rows WHERE seen_at < $1")
                    .bind(&cutoff)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
            }
        }
    }};
}

/// Deletes the rows of the keys in `erase_keys` from every table on `$tx` (`$shared`: the
/// store's work queue too); evaluates to `$erased` with the counts added.
macro_rules! delete_rows {
    ($tx:expr, $shared:expr, $erased:expr) => {{
        let mut erased: Erased = $erased;
        // The queue first: a worker's write of a key it claimed takes the key's queue row
        // (see [`super::shared::finish_claims`]), so this waits for a write under way, and a
        // write that comes later finds no claim and is left out.
        if $shared {
            erased.queued = sqlx::query(DELETE_QUEUED)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        }
        let mut removed = [0u64; DELETES.len()];
        for (count, statement) in removed.iter_mut().zip(DELETES) {
            *count = sqlx::query(statement)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        }
        let [products, changes, contacts, failures, row_links, handles] = removed;
        Erased {
            products,
            changes,
            contacts,
            failures,
            handles,
            row_links: erased.row_links + row_links,
            ..erased
        }
    }};
}

impl Store {
    /// Removes `whom` from every table that holds them, in one transaction; with `suppress`,
    /// lists them as not to be processed in that transaction too. A SQLite file is then scrubbed
    /// ([`scrub`]).
    pub(crate) async fn erase(
        &self,
        whom: Whom<'_>,
        suppress: bool,
        now: DateTime<Utc>,
    ) -> Result<Erased, StoreError> {
        let mut conn = self.connect().await?;
        let dialect = conn.dialect();
        let shared = self.shared().is_some();
        let erased = on_conn!(&mut conn, c => {
            for statement in dialect.erase_session {
                sqlx::query(statement).execute(&mut *c).await?;
            }
            sqlx::query("DROP TABLE IF EXISTS erase_keys").execute(&mut *c).await?;
            sqlx::query(CREATE_KEYS).execute(&mut *c).await?;
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            let mut erased = Erased {
                row_links: fill_keys!(&mut *tx, whom),
                ..Erased::default()
            };
            for statement in FOLLOW_HANDLES {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            if suppress {
                let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM erase_keys")
                    .fetch_all(&mut *tx)
                    .await?;
                let key = list_key!(&mut *tx)?;
                let hashes: Vec<String> = keys.iter().map(|k| key.digest_hex(k)).collect();
                erased.suppressed = insert_hashes!(&mut *tx, &hashes, format_time(now));
            }
            let erased = delete_rows!(&mut *tx, shared, erased);
            tx.commit().await?;
            sqlx::query("DROP TABLE erase_keys").execute(&mut *c).await?;
            erased
        });
        if erased != Erased::default() {
            scrub(&mut conn).await?;
        }
        Ok(erased)
    }

    /// Erases what this run stored, since `since`, of people on the do-not-process list, and
    /// lists the keys that led to them; returns how many contacts that was. Such a key comes from
    /// a `forget --suppress` beside a worker of a shared store whose plan was made before, or
    /// from a Telegram username new to the store that resolved to a listed user id (listed now,
    /// so it is not resolved again). Costs nothing while the list is empty.
    pub(crate) async fn erase_listed_since(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // UNION ALL: no sort of every key stored; the few listed ones are erased once each.
        const STORED_SINCE: &str = "SELECT chat_id FROM contacts WHERE fetched_at >= $1
             UNION ALL SELECT key FROM failures WHERE last_attempt_at >= $1
             UNION ALL SELECT chat_id FROM handles WHERE resolved_at >= $1";
        let Some(list) = self.suppression_list().await? else {
            return Ok(0);
        };
        let since = format_time(since);
        let mut conn = self.connect().await?;
        let stored: Vec<String> = on_conn!(&mut conn, c => {
            sqlx::query_scalar(STORED_SINCE).bind(&since).fetch_all(&mut *c).await?
        });
        let listed: Vec<String> = stored.into_iter().filter(|k| list.contains(k)).collect();
        if listed.is_empty() {
            return Ok(0);
        }
        Ok(self.erase(Whom::Keys(&listed), true, now).await?.contacts)
    }

    /// Takes `keys` off the do-not-process list; returns how many hashes were removed.
    pub(crate) async fn unsuppress(&self, keys: &[String]) -> Result<u64, StoreError> {
        let mut conn = self.connect().await?;
        Ok(on_conn!(&mut conn, c => {
            let mut tx = sqlx::Connection::begin(&mut *c).await?;
            let key: Option<String> = sqlx::query_scalar(READ_LIST_KEY)
                .fetch_optional(&mut *tx)
                .await?;
            let mut removed = 0;
            if let Some(key) = key.as_deref().and_then(SuppressionKey::from_hex) {
                for k in keys {
                    removed += sqlx::query("DELETE FROM suppressed WHERE key_hash = $1")
                        .bind(key.digest_hex(k))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
            }
            tx.commit().await?;
            removed
        }))
    }

    /// The do-not-process list, as a run reads it before staging; `None` when it is empty.
    pub(crate) async fn suppression_list(&self) -> Result<Option<SuppressionList>, StoreError> {
        let mut conn = self.connect().await?;
        Ok(on_conn!(&mut conn, c => {
            let hashes: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM suppressed")
                .fetch_all(&mut *c)
                .await?;
            let key: Option<String> = sqlx::query_scalar(READ_LIST_KEY)
                .fetch_optional(&mut *c)
                .await?;
            match key.as_deref().and_then(SuppressionKey::from_hex) {
                Some(key) if !hashes.is_empty() => Some(SuppressionList::new(key, &hashes)),
                _ => None,
            }
        }))
    }
}

/// After an erasure, a SQLite file keeps no copy of what was removed: the rows' old versions
/// (from earlier updates, in free space) are gone once the file is rebuilt, and the WAL, which
/// still holds pages written before, is emptied. A PostgreSQL store has nothing to run here: its
/// dead rows are the server's to vacuum (docs/privacy.md).
async fn scrub(conn: &mut Conn) -> Result<(), StoreError> {
    let Conn::Sqlite(c) = conn else {
        return Ok(());
    };
    sqlx::query("PRAGMA temp_store = DEFAULT")
        .execute(&mut *c)
        .await?;
    sqlx::query("VACUUM").execute(&mut *c).await?;
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *c)
        .await?;
    if busy != 0 {
        tracing::warn!("another program was reading the store: its WAL file could not be emptied, and may hold what was removed until the next run's checkpoint");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLocation;

    async fn contacts(store: &Store) -> Vec<String> {
        let mut conn = store.connect().await.unwrap();
        on_conn!(&mut conn, c => sqlx::query_scalar("SELECT chat_id FROM contacts ORDER BY chat_id")
            .fetch_all(c)
            .await
            .unwrap())
    }

    async fn store_contact(store: &Store, chat_id: &str, fetched_at: DateTime<Utc>) {
        const SQL: &str = "INSERT INTO contacts (chat_id, messenger, raw_json, fetched_at)
             VALUES ($1, 'whatsapp', '{}', $2)";
        let mut conn = store.connect().await.unwrap();
        on_conn!(&mut conn, c => {
            sqlx::query(SQL)
                .bind(chat_id)
                .bind(format_time(fetched_at))
                .execute(c)
                .await
                .unwrap();
        });
    }

    /// A worker whose plan was made before a `forget --suppress` stores the person after it: its
    /// run's end erases them again, and nobody else; the same for a new Telegram username of
    /// theirs.
    #[tokio::test]
    async fn what_a_run_stored_of_people_listed_while_it_went_is_erased_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::Sqlite(dir.path().join("out.db"));
        let store = Store::open(&location, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let run_began = Utc::now() - chrono::Duration::seconds(10);
        let (person, other) = ("79001234567@c.us".to_string(), "79001234568@c.us");
        assert_eq!(
            store
                .erase_listed_since(run_began, Utc::now())
                .await
                .unwrap(),
            0
        );

        let listed = store
            .erase(Whom::Keys(std::slice::from_ref(&person)), true, Utc::now())
            .await
            .unwrap();
        assert_eq!((listed.contacts, listed.suppressed), (0, 1));
        store_contact(&store, &person, Utc::now()).await;
        store_contact(&store, other, Utc::now()).await;
        assert_eq!(
            store
                .erase_listed_since(run_began, Utc::now())
                .await
                .unwrap(),
            1
        );
        assert_eq!(contacts(&store).await, [other]);

        // What an earlier run stored is not this run's to sweep.
        store_contact(&store, &person, Utc::now() - chrono::Duration::hours(1)).await;
        assert_eq!(
            store
                .erase_listed_since(run_began, Utc::now())
                .await
                .unwrap(),
            0
        );

        // A Telegram username new to the store that resolved to a listed user id: the contact
        // goes, and the username is listed too.
        const RESOLVED: &str =
            "INSERT INTO handles (handle, chat_id, resolved_at) VALUES ('@new_name', $1, $2)";
        let mut conn = store.connect().await.unwrap();
        on_conn!(&mut conn, c => {
            sqlx::query(RESOLVED).bind(&person).bind(format_time(Utc::now())).execute(c).await.unwrap();
        });
        assert_eq!(
            store
                .erase_listed_since(run_began, Utc::now())
                .await
                .unwrap(),
            1
        );
        let list = store.suppression_list().await.unwrap().unwrap();
        assert!(list.contains("@new_name") && list.contains(&person));
        assert_eq!(contacts(&store).await, [other]);
    }
}
