//! The single writer: commits each batch of key outcomes in one transaction, a contact together
//! with its products and the removal of its failure row, so a crash never splits them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::changes::{record_changes, stored_contacts, stored_fields};
use super::conn::{on_conn, Conn, Connector};
use super::ledger::MinuteRow;
use super::{last_per_key, shared, Store, StoreError, WorkerId};
use crate::change::{self, Change, Compared, Tracked};
use crate::chat_id::Messenger;
use crate::normalise::{format_time, parse_time, time_after, Enriched, ProductRow};
use crate::reason::Reason;

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 100;

/// A failed key, as stored in `failures`.
#[derive(Debug, Clone)]
pub struct FailedKey {
    /// The chat id, or the raw input value when it is not a valid id.
    pub key: String,
    /// The value as it stood in the input, when it is not the key itself.
    pub input_value: Option<String>,
    /// Why it failed.
    pub reason: Reason,
    /// Why, for people.
    pub message: String,
    /// The HTTP status of the last attempt.
    pub http_status: Option<u16>,
    /// Calls made for it in this run.
    pub attempts: u32,
    /// Whether it waits for `--retry-failed-after` rather than `--retry-transient-after`.
    pub permanent: bool,
    /// The Telegram phone number or username it was asked as, when the key is the chat id
    /// that was resolved from it in this run (the key the run holds).
    pub handle: Option<String>,
}

/// The final outcome of one key in this run, or a Telegram handle's chat id on the way.
#[derive(Debug, Clone)]
pub enum KeyOutcome {
    /// Its contact and products.
    Enriched(Box<Enriched>),
    /// Its failure.
    Failed(FailedKey),
    /// A Telegram phone number or username and the chat id `checkAccount` found for it: kept at
    /// once, so the call is not repeated even if the run stops before the contact is asked.
    Resolved(Resolution),
}

/// A Telegram phone number (`+digits`) or `@username`, and its account's chat id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The phone number or username.
    pub handle: String,
    /// The account's chat id.
    pub chat_id: String,
}

/// When a failed key is due again, by the kind of failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryDelays {
    /// After a permanent failure (`--retry-failed-after`).
    pub permanent: Duration,
    /// After a transient failure (`--retry-transient-after`).
    pub transient: Duration,
}

impl RetryDelays {
    pub(crate) fn next_due(&self, permanent: bool, now: DateTime<Utc>) -> DateTime<Utc> {
        let delay = if permanent {
            self.permanent
        } else {
            self.transient
        };
        time_after(now, delay)
    }
}

/// The single writer of a run's outcomes.
pub struct Writer {
    conn: Conn,
    connector: Connector,
    messenger: Messenger,
    delays: RetryDelays,
    /// The worker whose claims fence the writes (a shared PostgreSQL store).
    fence: Option<WorkerId>,
    /// The run whose results these are (it is named in `changes`).
    run_id: i64,
}

/// What one commit wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Keys whose results were left out (behind the fence: no longer this worker's).
    pub left_out: Vec<String>,
    /// Contacts written for the first time.
    pub new: u64,
    /// Contacts that changed since their last fetch.
    pub changed: u64,
    /// Contacts as they were at their last fetch.
    pub unchanged: u64,
}

/// A connection for the writer, set up as its engine wants it.
async fn writer_connection(connector: &Connector) -> Result<Conn, StoreError> {
    let mut conn = connector.connect().await?;
    if let Some(setup) = conn.dialect().writer_session {
        on_conn!(&mut conn, c => {
            sqlx::query(setup).execute(c).await?;
        });
    }
    Ok(conn)
}

impl Writer {
    /// A writer of run `run_id`'s results on its own connection to `store`.
    pub async fn new(
        store: &Store,
        messenger: Messenger,
        delays: RetryDelays,
        run_id: i64,
    ) -> Result<Writer, StoreError> {
        Ok(Writer {
            conn: writer_connection(&store.connector()).await?,
            connector: store.connector(),
            messenger,
            delays,
            fence: None,
            run_id,
        })
    }

    /// Writes only the results of keys `worker` still holds the claim of (see [`Writer::commit`]).
    pub(crate) fn fenced_by(mut self, worker: Option<WorkerId>) -> Writer {
        self.fence = worker;
        self
    }

    /// A new connection in place of one that was lost (the store restarted, a cut).
    pub(crate) async fn reconnect(&mut self) -> Result<(), StoreError> {
        self.conn = writer_connection(&self.connector).await?;
        Ok(())
    }

    /// Commits `batch` in one transaction; says what it wrote. Each contact is compared with
    /// what the store held of it ([`crate::change`]): new, changed (recorded in `changes`) or
    /// unchanged. Behind a fence (a worker of a shared store), a key's result is written only
    /// while the worker holds the key's claim: the claim is checked and the key's queue row
    /// marked done first, in the same transaction, and the results of keys whose claim passed to
    /// another worker are left out (that worker writes its own). The same batch committed twice
    /// writes nothing the second time, so a commit whose answer was lost with the connection
    /// can be retried.
    pub async fn commit(
        &mut self,
        batch: &[KeyOutcome],
        now: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        let batch = last_per_key(batch, KeyOutcome::key);
        let (messenger, delays, run) = (self.messenger, &self.delays, self.run_id);
        let committed = match (&mut self.conn, self.fence) {
            (Conn::Postgres(c), Some(worker)) => {
                let mut tx = sqlx::Connection::begin(c).await?;
                let keys: Vec<&str> = batch.iter().filter_map(|o| o.claim()).collect();
                let held = shared::finish_claims(&mut tx, worker, &keys).await?;
                let (kept, left_out): (Vec<&KeyOutcome>, Vec<&KeyOutcome>) = batch
                    .iter()
                    .partition(|o| o.claim().is_none_or(|claim| held.contains(claim)));
                let mut committed = write_results!(&mut *tx, &kept, messenger, now, delays, run);
                tx.commit().await?;
                committed.left_out = left_out.iter().map(|o| o.key().to_string()).collect();
                committed
            }
            (conn, _) => on_conn!(conn, c => {
                let mut tx = sqlx::Connection::begin(c).await?;
                let committed = write_results!(&mut *tx, &batch, messenger, now, delays, run);
                tx.commit().await?;
                committed
            }),
        };
        if !committed.left_out.is_empty() {
            tracing::warn!(
                "{} answers were not written: their keys are no longer this worker's (their claims had passed to another worker, which fetches them, or they were written already)",
                committed.left_out.len()
            );
        }
        Ok(committed)
    }

    /// Keeps the run's calls per instance and minute (the run report's chart), on the writer's
    /// own connection (a second writer of a SQLite file would break its transactions): each row
    /// replaces what the store held for its minute.
    pub(crate) async fn record_minutes(&mut self, rows: &[MinuteRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let run_id = self.run_id;
        on_conn!(&mut self.conn, c => {
            for chunk in rows.chunks(200) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO run_minutes (run_id, instance, minute, calls, http_429, spacing_ms) ",
                );
                q.push_values(chunk, |mut row, m| {
                    row.push_bind(run_id)
                        .push_bind(&m.instance)
                        .push_bind(i64::from(m.minute))
                        .push_bind(m.calls as i64)
                        .push_bind(m.http_429 as i64)
                        .push_bind(m.spacing_ms);
                });
                q.push(
                    " ON CONFLICT (run_id, instance, minute) DO UPDATE SET calls = excluded.calls, \
                     http_429 = excluded.http_429, spacing_ms = excluded.spacing_ms",
                );
                q.build().execute(&mut *c).await?;
            }
        });
        Ok(())
    }
}

impl KeyOutcome {
    /// The key this outcome is for.
    pub fn key(&self) -> &str {
        match self {
            KeyOutcome::Enriched(e) => &e.contact.chat_id,
            KeyOutcome::Failed(f) => &f.key,
            KeyOutcome::Resolved(r) => &r.handle,
        }
    }

    /// The key the run holds for this outcome (a shared store's claim): the Telegram handle a
    /// chat id was resolved from, else the key; `None` for a resolution, which settles nothing.
    pub fn claim(&self) -> Option<&str> {
        let handle = match self {
            KeyOutcome::Enriched(e) => e.handle.as_deref(),
            KeyOutcome::Failed(f) => f.handle.as_deref(),
            KeyOutcome::Resolved(_) => return None,
        };
        Some(handle.unwrap_or(self.key()))
    }
}

/// Writes `batch` (`&[&KeyOutcome]`) of run `run` on `tx`: each contact with its products and
/// its change history, replacing its failure row, and each failure; evaluates to the
/// [`Committed`] counts.
macro_rules! write_results {
    ($tx:expr, $batch:expr, $messenger:expr, $now:expr, $delays:expr, $run:expr) => {{
        let mut committed = Committed::default();
        let enriched: Vec<&Enriched> = $batch
            .iter()
            .filter_map(|o| match o {
                KeyOutcome::Enriched(e) => Some(e.as_ref()),
                _ => None,
            })
            .collect();
        let failed: Vec<&FailedKey> = $batch
            .iter()
            .filter_map(|o| match o {
                KeyOutcome::Failed(f) => Some(f),
                _ => None,
            })
            .collect();
        let resolved: Vec<&Resolution> = $batch
            .iter()
            .filter_map(|o| match o {
                KeyOutcome::Resolved(r) => Some(r),
                _ => None,
            })
            .collect();
        for chunk in resolved.chunks(ROWS_PER_STATEMENT) {
            upsert_handles!($tx, chunk, $now);
        }
        for chunk in enriched.chunks(ROWS_PER_STATEMENT) {
            let keys: Vec<&str> = chunk.iter().map(|e| e.contact.chat_id.as_str()).collect();
            let mut stored = stored_contacts!($tx, &keys);
            let fetched: Vec<(Tracked, String)> = chunk
                .iter()
                .map(|e| {
                    let tracked = Tracked::of(&e.contact, &e.products);
                    let fingerprint = tracked.fingerprint();
                    (tracked, fingerprint)
                })
                .collect();
            // The fields are read only where the fingerprint says something changed.
            let differing: Vec<&str> = keys
                .iter()
                .zip(&fetched)
                .filter(|(key, (_, fp))| stored.get(**key).is_some_and(|s| s.may_differ(fp)))
                .map(|(key, _)| *key)
                .collect();
            if !differing.is_empty() {
                for (key, tracked) in stored_fields!($tx, &differing) {
                    if let Some(s) = stored.get_mut(&key) {
                        s.tracked = Some(tracked);
                    }
                }
            }
            let compared: Vec<Compared> = chunk
                .iter()
                .zip(fetched)
                .map(|(e, (tracked, fingerprint))| {
                    let fetched_at = parse_time(&e.contact.fetched_at).unwrap_or($now);
                    let stored = stored.get(&e.contact.chat_id);
                    change::compare(stored, &tracked, fingerprint, fetched_at, $run)
                })
                .collect();
            committed.count(&compared);
            let rows: Vec<(&Enriched, &Compared)> = chunk.iter().copied().zip(&compared).collect();
            upsert_contacts!($tx, &rows);
            let changes: Vec<(&str, &Compared)> = keys.iter().copied().zip(&compared).collect();
            record_changes!($tx, changes, $run);
            delete_where_in!($tx, "DELETE FROM products WHERE chat_id IN ", chunk);
            delete_where_in!($tx, "DELETE FROM failures WHERE key IN ", chunk);
            let products: Vec<(&str, &ProductRow)> = chunk
                .iter()
                .flat_map(|e| e.products.iter().map(|p| (e.contact.chat_id.as_str(), p)))
                .collect();
            for products in products.chunks(ROWS_PER_STATEMENT) {
                insert_products!($tx, products);
            }
        }
        for chunk in failed.chunks(ROWS_PER_STATEMENT) {
            upsert_failures!($tx, chunk, $messenger, $now, $delays);
        }
        committed
    }};
}
use write_results;

impl Committed {
    /// Counts what the comparisons found.
    fn count(&mut self, compared: &[Compared]) {
        for c in compared {
            match c.change {
                Change::New => self.new += 1,
                Change::Changed => self.changed += 1,
                Change::Unchanged => self.unchanged += 1,
            }
        }
    }
}

// The statements below are macros, not functions: each is compiled once per engine inside
// `on_conn!`, with sqlx's typed binding (a function generic over the engine would need a bound
// for every bound type). Flags are bound as integers on both engines.

/// Inserts or updates the contacts of `rows` (`&[(&Enriched, &Compared)]`) on `conn`, each with
/// its change history.
macro_rules! upsert_contacts {
    ($conn:expr, $rows:expr) => {{
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO contacts (chat_id, messenger, phone, name, contact_name, email, category, \
             description, avatar_url, is_business, last_seen_at, is_archived, is_muted, \
             is_disappearing, message_expiration, mute_expiration, raw_json, fetched_at, \
             fingerprint, first_seen_at, changed_at, changed_run, last_change, fetches_changed, \
             fetches_unchanged, changed_seconds, unchanged_seconds) ",
        );
        q.push_values($rows, |mut row, (e, compared)| {
            let c = &e.contact;
            let h = &compared.history;
            row.push_bind(&c.chat_id)
                .push_bind(c.messenger.as_str())
                .push_bind(&c.phone)
                .push_bind(&c.name)
                .push_bind(&c.contact_name)
                .push_bind(&c.email)
                .push_bind(&c.category)
                .push_bind(&c.description)
                .push_bind(&c.avatar_url)
                .push_bind(c.is_business.map(i64::from))
                .push_bind(&c.last_seen_at)
                .push_bind(c.is_archived.map(i64::from))
                .push_bind(c.is_muted.map(i64::from))
                .push_bind(c.is_disappearing.map(i64::from))
                .push_bind(c.message_expiration)
                .push_bind(c.mute_expiration)
                .push_bind(&c.raw_json)
                .push_bind(&c.fetched_at)
                .push_bind(&compared.fingerprint)
                .push_bind(format_time(h.first_seen_at))
                .push_bind(format_time(h.changed_at))
                .push_bind(h.changed_run)
                .push_bind(compared.change.as_str())
                .push_bind(h.fetches_changed)
                .push_bind(h.fetches_unchanged)
                .push_bind(h.changed_seconds)
                .push_bind(h.unchanged_seconds);
        });
        q.push(
            " ON CONFLICT (chat_id) DO UPDATE SET messenger = excluded.messenger, \
             phone = excluded.phone, name = excluded.name, contact_name = excluded.contact_name, \
             email = excluded.email, category = excluded.category, \
             description = excluded.description, avatar_url = excluded.avatar_url, \
             is_business = excluded.is_business, last_seen_at = excluded.last_seen_at, \
             is_archived = excluded.is_archived, is_muted = excluded.is_muted, \
             is_disappearing = excluded.is_disappearing, \
             message_expiration = excluded.message_expiration, \
             mute_expiration = excluded.mute_expiration, raw_json = excluded.raw_json, \
             fetched_at = excluded.fetched_at, fingerprint = excluded.fingerprint, \
             first_seen_at = excluded.first_seen_at, changed_at = excluded.changed_at, \
             changed_run = excluded.changed_run, last_change = excluded.last_change, \
             fetches_changed = excluded.fetches_changed, \
             fetches_unchanged = excluded.fetches_unchanged, \
             changed_seconds = excluded.changed_seconds, \
             unchanged_seconds = excluded.unchanged_seconds",
        );
        q.build().execute($conn).await?;
    }};
}
use upsert_contacts;

/// Keeps the chat ids of `chunk` (`&[&Resolution]`), and deletes the failure rows of their
/// handles (an earlier "no account" or a transient failure of the check).
macro_rules! upsert_handles {
    ($conn:expr, $chunk:expr, $now:expr) => {{
        let mut q = sqlx::QueryBuilder::new("INSERT INTO handles (handle, chat_id, resolved_at) ");
        let now = format_time($now);
        q.push_values($chunk, |mut row, r| {
            row.push_bind(&r.handle)
                .push_bind(&r.chat_id)
                .push_bind(now.clone());
        });
        q.push(
            " ON CONFLICT (handle) DO UPDATE SET chat_id = excluded.chat_id, \
             resolved_at = excluded.resolved_at",
        );
        q.build().execute($conn).await?;
        let mut q = sqlx::QueryBuilder::new("DELETE FROM failures WHERE key IN ");
        q.push_tuples($chunk, |mut row, r| {
            row.push_bind(&r.handle);
        });
        q.build().execute($conn).await?;
    }};
}
use upsert_handles;

/// `statement` (`DELETE … WHERE x IN `) for the chat ids of `chunk`.
macro_rules! delete_where_in {
    ($conn:expr, $statement:expr, $chunk:expr) => {{
        let mut q = sqlx::QueryBuilder::new($statement);
        q.push_tuples($chunk, |mut row, e| {
            row.push_bind(&e.contact.chat_id);
        });
        q.build().execute($conn).await?;
    }};
}
use delete_where_in;

/// Inserts `products` (`&[(&str, &ProductRow)]`); the first of two with the same id wins (the
/// key is (chat_id, product_id)).
macro_rules! insert_products {
    ($conn:expr, $products:expr) => {{
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO products (chat_id, product_id, position, name, description, price, \
             availability, is_hidden, review_status, image_url, image_preview_url) ",
        );
        q.push_values($products, |mut row, (chat_id, p)| {
            row.push_bind(*chat_id)
                .push_bind(&p.product_id)
                .push_bind(p.position)
                .push_bind(&p.name)
                .push_bind(&p.description)
                .push_bind(&p.price)
                .push_bind(&p.availability)
                .push_bind(p.is_hidden.map(i64::from))
                .push_bind(&p.review_status)
                .push_bind(&p.image_url)
                .push_bind(&p.image_preview_url);
        });
        q.push(" ON CONFLICT (chat_id, product_id) DO NOTHING");
        q.build().execute($conn).await?;
    }};
}
use insert_products;

/// Inserts or updates the failure rows of `chunk` (`&[&FailedKey]`); attempts add up across
/// runs, the first failure time stays.
macro_rules! upsert_failures {
    ($conn:expr, $chunk:expr, $messenger:expr, $now:expr, $delays:expr) => {{
        let now_text = $crate::normalise::format_time($now);
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO failures (key, messenger, input_value, reason, message, http_status, \
             attempts, permanent, first_failed_at, last_attempt_at, next_due_at) ",
        );
        q.push_values($chunk, |mut row, f| {
            row.push_bind(&f.key)
                .push_bind($messenger.as_str())
                .push_bind(f.input_value.as_deref().unwrap_or(&f.key))
                .push_bind(f.reason.as_str())
                .push_bind(&f.message)
                .push_bind(f.http_status.map(i64::from))
                .push_bind(i64::from(f.attempts))
                .push_bind(i64::from(f.permanent))
                .push_bind(now_text.clone())
                .push_bind(now_text.clone())
                .push_bind($crate::normalise::format_time($delays.next_due(f.permanent, $now)));
        });
        q.push(
            " ON CONFLICT (key) DO UPDATE SET reason = excluded.reason, message = excluded.message, \
             input_value = excluded.input_value, http_status = excluded.http_status, \
             attempts = failures.attempts + excluded.attempts, \
             permanent = excluded.permanent, last_attempt_at = excluded.last_attempt_at, \
             next_due_at = excluded.next_due_at",
        );
        q.build().execute($conn).await?;
    }};
}
pub(super) use upsert_failures;
