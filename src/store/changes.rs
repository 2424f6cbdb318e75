//! Change tracking in the store: what the writer reads of a batch's contacts before it writes
//! them (their compared fields, products and history), and the `changes` rows it adds. The
//! comparing itself is pure ([`crate::change`]).
//!
//! Written as macros for the same reason as the writer's statements: each is compiled once per
//! engine inside `on_conn!`.

use std::collections::HashMap;

use crate::change::{products_fingerprint, History, Stored, Tracked};
use crate::normalise::{parse_time, ProductRow};

/// The stored contact columns [`stored_contacts!`] reads, in order.
pub(super) const STORED_COLUMNS: &str = "chat_id, fingerprint, fetched_at, first_seen_at, \
     changed_at, changed_run, fetches_changed, fetches_unchanged, changed_seconds, \
     unchanged_seconds";

/// One row of [`STORED_COLUMNS`].
pub(super) type StoredRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    f64,
    f64,
);

/// The compared contact columns [`stored_fields!`] reads, in order.
pub(super) const TRACKED_COLUMNS: &str =
    "chat_id, name, contact_name, email, category, description, avatar_url, is_business";

/// One row of [`TRACKED_COLUMNS`].
pub(super) type TrackedRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// The stored product columns [`stored_fields!`] reads, in order.
pub(super) const STORED_PRODUCT_COLUMNS: &str = "chat_id, product_id, name, description, price, \
     availability, is_hidden, review_status, image_url";

/// One row of [`STORED_PRODUCT_COLUMNS`].
pub(super) type StoredProductRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// The stored fingerprint and history of the contacts of `keys` (`&[&str]`) on `conn`, by chat
/// id (their fields are not read: see [`stored_fields!`]).
macro_rules! stored_contacts {
    ($conn:expr, $keys:expr) => {{
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {} FROM contacts WHERE chat_id IN ",
            $crate::store::changes::STORED_COLUMNS
        ));
        q.push_tuples($keys, |mut row, key| {
            row.push_bind(*key);
        });
        let rows: Vec<$crate::store::changes::StoredRow> =
            q.build_query_as().fetch_all(&mut *$conn).await?;
        $crate::store::changes::stored(rows)
    }};
}
pub(super) use stored_contacts;

/// The compared fields (with the products) of the contacts of `keys` (`&[&str]`) on `conn`, by
/// chat id: read only for the contacts whose fingerprint differs, to name what changed.
macro_rules! stored_fields {
    ($conn:expr, $keys:expr) => {{
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {} FROM contacts WHERE chat_id IN ",
            $crate::store::changes::TRACKED_COLUMNS
        ));
        q.push_tuples($keys, |mut row, key| {
            row.push_bind(*key);
        });
        let contacts: Vec<$crate::store::changes::TrackedRow> =
            q.build_query_as().fetch_all(&mut *$conn).await?;
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {} FROM products WHERE chat_id IN ",
            $crate::store::changes::STORED_PRODUCT_COLUMNS
        ));
        q.push_tuples($keys, |mut row, key| {
            row.push_bind(*key);
        });
        q.push(" ORDER BY chat_id, position");
        let products: Vec<$crate::store::changes::StoredProductRow> =
            q.build_query_as().fetch_all(&mut *$conn).await?;
        $crate::store::changes::tracked(contacts, products)
    }};
}
pub(super) use stored_fields;

/// Adds a `changes` row for each changed contact of `compared` (`&[(&str, &Compared)]`, by chat
/// id), found by run `run`. (A new contact is no change: `contacts.first_seen_at` says when it
/// came, and a first import of a million contacts writes no million rows here.)
macro_rules! record_changes {
    ($conn:expr, $compared:expr, $run:expr) => {{
        let recorded: Vec<&(&str, &$crate::change::Compared)> = $compared
            .iter()
            .filter(|(_, c)| c.change == $crate::change::Change::Changed)
            .collect();
        if !recorded.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO changes (run_id, chat_id, changed_at, fields) ",
            );
            q.push_values(recorded, |mut row, (chat_id, c)| {
                row.push_bind($run)
                    .push_bind(*chat_id)
                    .push_bind($crate::normalise::format_time(c.history.changed_at))
                    .push_bind(c.fields.join(","));
            });
            q.build().execute(&mut *$conn).await?;
        }
    }};
}
pub(super) use record_changes;

/// The stored contacts' fingerprints and histories, by chat id. Times that do not read (none
/// should) count as the contact's last fetch.
pub(super) fn stored(rows: Vec<StoredRow>) -> HashMap<String, Stored> {
    rows.into_iter()
        .map(|row| {
            let fetched_at = parse_time(&row.2).unwrap_or_default();
            let time =
                |text: Option<String>| text.as_deref().and_then(parse_time).unwrap_or(fetched_at);
            let stored = Stored {
                fingerprint: row.1,
                tracked: None,
                fetched_at,
                history: History {
                    first_seen_at: time(row.3),
                    changed_at: time(row.4),
                    changed_run: row.5,
                    fetches_changed: row.6,
                    fetches_unchanged: row.7,
                    changed_seconds: row.8,
                    unchanged_seconds: row.9,
                },
            };
            (row.0, stored)
        })
        .collect()
}

/// The stored compared fields of contacts and their products, by chat id.
pub(super) fn tracked(
    contacts: Vec<TrackedRow>,
    products: Vec<StoredProductRow>,
) -> HashMap<String, Tracked> {
    let mut cards: HashMap<String, Vec<ProductRow>> = HashMap::new();
    for (chat_id, product_id, name, description, price, availability, hidden, review, image) in
        products
    {
        let position = cards.get(&chat_id).map_or(0, |c| c.len() as i64);
        cards.entry(chat_id).or_default().push(ProductRow {
            product_id,
            position,
            name,
            description,
            price,
            availability,
            is_hidden: hidden.map(|h| h != 0),
            review_status: review,
            image_url: image,
            image_preview_url: None,
        });
    }
    contacts
        .into_iter()
        .map(
            |(chat_id, name, contact_name, email, category, description, avatar, business)| {
                let products = cards.remove(&chat_id).unwrap_or_default();
                let tracked = Tracked {
                    name,
                    contact_name,
                    email,
                    category,
                    description,
                    avatar: avatar.as_deref().map(crate::change::without_query),
                    is_business: business.map(|b| b != 0),
                    products: products_fingerprint(&products),
                };
                (chat_id, tracked)
            },
        )
        .collect()
}
