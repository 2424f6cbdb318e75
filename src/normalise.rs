//! Turns a `getContactInfo` answer into one `contacts` row and its `products` rows.
//!
//! Pure and forgiving: every field may be missing, booleans may arrive as strings, numbers as
//! strings and strings as numbers; unknown fields are kept in `raw_json` only.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::api::Answer;
use crate::chat_id::Messenger;

/// One row of the `contacts` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRow {
    /// The key: `79001234567@c.us` or a MAX id.
    pub chat_id: String,
    /// WhatsApp or MAX.
    pub messenger: Messenger,
    /// Digits, when the id is a phone number.
    pub phone: Option<String>,
    /// Profile name.
    pub name: Option<String>,
    /// Name in the instance's phone book.
    pub contact_name: Option<String>,
    /// Business e-mail.
    pub email: Option<String>,
    /// Business category.
    pub category: Option<String>,
    /// Business description.
    pub description: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// A business account.
    pub is_business: Option<bool>,
    /// RFC 3339 UTC.
    pub last_seen_at: Option<String>,
    /// Chat flag.
    pub is_archived: Option<bool>,
    /// Chat flag.
    pub is_muted: Option<bool>,
    /// Chat flag.
    pub is_disappearing: Option<bool>,
    /// Seconds.
    pub message_expiration: Option<i64>,
    /// Seconds.
    pub mute_expiration: Option<i64>,
    /// The answer as received.
    pub raw_json: String,
    /// When it was fetched (RFC 3339 UTC).
    pub fetched_at: String,
}

/// One row of the `products` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    /// The product card's id.
    pub product_id: String,
    /// Its place in the answer's list.
    pub position: i64,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Price as returned (no currency exists).
    pub price: Option<String>,
    /// Such as "in stock".
    pub availability: Option<String>,
    /// Hidden from the catalogue.
    pub is_hidden: Option<bool>,
    /// WhatsApp's review status.
    pub review_status: Option<String>,
    /// Full-size image URL.
    pub image_url: Option<String>,
    /// Preview image URL.
    pub image_preview_url: Option<String>,
}

/// A contact with its products, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Enriched {
    /// The `contacts` row.
    pub contact: ContactRow,
    /// Its `products` rows.
    pub products: Vec<ProductRow>,
    /// The Telegram phone number or username it was asked as, resolved to its chat id in this
    /// run (the key the run holds).
    pub handle: Option<String>,
}

/// Timestamps are stored as RFC 3339 UTC text with a fixed width, so they sort as text.
pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A time as the store keeps it (RFC 3339), if it is one.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The earliest and latest times [`format_time`] writes with four-digit years (text sorts as
/// time only within them).
fn time_bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        DateTime::<Utc>::from_timestamp(-62_167_219_200, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
        DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// `by` after `t`, saturating at the year 9999 (a flag such as `--retry-failed-after 100000000d`
/// means "not in any foreseeable time", not a panic).
pub(crate) fn time_after(t: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| t.checked_add_signed(by))
        .map_or(time_bounds().1, |later| later.min(time_bounds().1))
}

/// `by` before `t`, saturating at the year 0.
pub(crate) fn time_before(t: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| t.checked_sub_signed(by))
        .map_or(time_bounds().0, |earlier| earlier.max(time_bounds().0))
}

/// Builds the rows for `chat_id` from its answer.
pub(crate) fn normalise(
    chat_id: &str,
    phone: Option<String>,
    messenger: Messenger,
    answer: &Answer,
    fetched_at: DateTime<Utc>,
) -> Enriched {
    let obj = &answer.object;
    // Telegram tells the number (0 when it is hidden) of an account asked by its id.
    let phone = phone.or_else(|| {
        integer(obj, &["phoneNumber"])
            .filter(|n| *n > 0)
            .map(|n| n.to_string())
    });
    let contact = ContactRow {
        chat_id: chat_id.to_string(),
        messenger,
        phone,
        name: text(obj, &["name"]),
        contact_name: text(obj, &["contactName"]),
        email: text(obj, &["email"]),
        category: text(obj, &["category"]),
        description: text(obj, &["description"]),
        avatar_url: text(obj, &["avatar"]),
        is_business: flag(obj, &["isBusiness"]),
        last_seen_at: obj.get("lastSeen").and_then(last_seen),
        is_archived: flag(obj, &["isArchive", "isArchived"]),
        is_muted: flag(obj, &["isMute", "isMuted"]),
        is_disappearing: flag(obj, &["isDisappearing"]),
        message_expiration: integer(obj, &["messageExpiration", "messageexpiration"]),
        mute_expiration: integer(obj, &["muteExpiration", "muteexpiration"]),
        raw_json: answer.raw.clone(),
        fetched_at: format_time(fetched_at),
    };
    let products = match obj.get("products") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .enumerate()
            .filter_map(|(position, item)| product(position, item))
            .collect(),
        _ => Vec::new(),
    };
    Enriched {
        contact,
        products,
        handle: None,
    }
}

fn product(position: usize, item: &Map<String, Value>) -> Option<ProductRow> {
    let product_id = text(item, &["id"])?;
    let images = item.get("imageUrls").and_then(Value::as_object);
    let review_status = match item.get("reviewStatus") {
        Some(Value::Object(status)) => text(status, &["whatsapp"]),
        Some(other) => scalar_text(other),
        None => None,
    };
    Some(ProductRow {
        product_id,
        position: i64::try_from(position).unwrap_or(i64::MAX),
        name: text(item, &["name"]),
        description: text(item, &["description"]),
        price: text(item, &["price"]),
        availability: text(item, &["availability"]),
        is_hidden: flag(item, &["isHidden"]),
        review_status,
        image_url: images.and_then(|i| text(i, &["original"])),
        image_preview_url: images.and_then(|i| text(i, &["requested"])),
    })
}

fn first<'a>(obj: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| obj.get(*k))
}

/// Trimmed text; numbers become their text; empty strings, null and objects become `None`.
fn text(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    first(obj, keys).and_then(scalar_text)
}

fn scalar_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// Booleans, also when typed as strings (`"true"`) or numbers (`1`).
fn flag(obj: &Map<String, Value>, keys: &[&str]) -> Option<bool> {
    match first(obj, keys)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|n| n != 0.0),
        _ => None,
    }
}

fn integer(obj: &Map<String, Value>, keys: &[&str]) -> Option<i64> {
    match first(obj, keys)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Values at or above this are taken as milliseconds (this is 2286 in seconds).
const MILLIS_THRESHOLD: i64 = 10_000_000_000;

/// `lastSeen` as RFC 3339 UTC: UNIX seconds or milliseconds, as a number or a string, or a date
/// string; zero, null and anything unreadable become `None`.
fn last_seen(value: &Value) -> Option<String> {
    let epoch = match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    let parsed = DateTime::parse_from_rfc3339(s).ok()?;
                    return Some(format_seconds(parsed.with_timezone(&Utc)));
                }
            }
        }
        _ => return None,
    };
    if epoch <= 0 {
        return None;
    }
    let time = if epoch >= MILLIS_THRESHOLD {
        DateTime::from_timestamp_millis(epoch)?
    } else {
        DateTime::from_timestamp(epoch, 0)?
    };
    Some(format_seconds(time))
}

fn format_seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_read_back() {
        let t = DateTime::from_timestamp(1, 500_000_000).unwrap();
        assert_eq!(parse_time(&format_time(t)), Some(t));
        assert_eq!(parse_time("1970-01-01T00:00:01.500Z"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }

    fn fixed_time() -> DateTime<Utc> {
        DateTime::from_timestamp(1_754_632_014, 0).unwrap()
    }

    fn rows(body: &str) -> Enriched {
        let answer = Answer::parse(body).unwrap();
        normalise(
            "79001234567@c.us",
            Some("79001234567".into()),
            Messenger::Whatsapp,
            &answer,
            fixed_time(),
        )
    }

    #[test]
    fn documented_business_answer() {
        let body = r#"{"avatar":"https://pps.example/a.jpg","name":" Dealer ","contactName":"",
            "email":"24service@tt.tt","category":"Automotive Dealership","description":"Official",
            "products":[{"id":"42079728159","imageUrls":{"requested":"https://p/s.jpg","original":"https://p/o.jpg"},
              "reviewStatus":{"whatsapp":"APPROVED"},"availability":"in stock","name":"Repair",
              "description":"From 1000","price":null,"isHidden":false},
              {"id":"3545870328871389","name":"Service","price":"1500.00","isHidden":true}],
            "chatId":"79001234567@c.us","lastSeen":1754632014,"isArchive":false,"isDisappearing":false,
            "isMute":"true","messageExpiration":0,"muteExpiration":null,"isBusiness":true,"newField":1}"#;
        let e = rows(body);
        let c = &e.contact;
        assert_eq!(c.name.as_deref(), Some("Dealer"));
        assert_eq!(c.contact_name, None);
        assert_eq!(c.email.as_deref(), Some("24service@tt.tt"));
        assert_eq!(c.avatar_url.as_deref(), Some("https://pps.example/a.jpg"));
        assert_eq!(c.is_business, Some(true));
        assert_eq!(c.is_muted, Some(true));
        assert_eq!(c.is_archived, Some(false));
        assert_eq!(c.message_expiration, Some(0));
        assert_eq!(c.mute_expiration, None);
        assert_eq!(c.last_seen_at.as_deref(), Some("2025-08-08T05:46:54Z"));
        assert_eq!(c.fetched_at, "2025-08-08T05:46:54.000Z");
        assert!(c.raw_json.contains("newField"));
        assert_eq!(e.products.len(), 2);
        let p = &e.products[0];
        assert_eq!(p.product_id, "42079728159");
        assert_eq!(p.position, 0);
        assert_eq!(p.price, None);
        assert_eq!(p.review_status.as_deref(), Some("APPROVED"));
        assert_eq!(p.image_url.as_deref(), Some("https://p/o.jpg"));
        assert_eq!(p.image_preview_url.as_deref(), Some("https://p/s.jpg"));
        assert_eq!(e.products[1].price.as_deref(), Some("1500.00"));
        assert_eq!(e.products[1].description, None);
        assert_eq!(e.products[1].is_hidden, Some(true));
    }

    #[test]
    fn last_seen_in_every_shape() {
        let seen = |v: &str| rows(&format!(r#"{{"lastSeen":{v}}}"#)).contact.last_seen_at;
        assert_eq!(seen("1754632014").as_deref(), Some("2025-08-08T05:46:54Z"));
        assert_eq!(
            seen("1754632014123").as_deref(),
            Some("2025-08-08T05:46:54Z")
        );
        assert_eq!(
            seen(r#""1754632014""#).as_deref(),
            Some("2025-08-08T05:46:54Z")
        );
        assert_eq!(
            seen(r#""2025-08-08T08:46:54+03:00""#).as_deref(),
            Some("2025-08-08T05:46:54Z")
        );
        assert_eq!(seen("null"), None);
        assert_eq!(seen("0"), None);
        assert_eq!(seen(r#""soon""#), None);
    }

    #[test]
    fn wrong_types_and_lower_case_spellings() {
        let e = rows(
            r#"{"name":42,"isBusiness":"true","products":{},"messageexpiration":"86400","muteexpiration":5}"#,
        );
        assert_eq!(e.contact.name.as_deref(), Some("42"));
        assert_eq!(e.contact.is_business, Some(true));
        assert!(e.products.is_empty());
        assert_eq!(e.contact.message_expiration, Some(86400));
        assert_eq!(e.contact.mute_expiration, Some(5));
        let priced = rows(r#"{"products":[{"id":7,"price":12}]}"#);
        assert_eq!(priced.products[0].product_id, "7");
        assert_eq!(priced.products[0].price.as_deref(), Some("12"));
    }

    #[test]
    fn missing_fields_are_null_and_products_without_id_are_skipped() {
        let e = rows(r#"{"products":[{"name":"no id"}, "junk"]}"#);
        assert_eq!(e.contact.name, None);
        assert_eq!(e.contact.is_business, None);
        assert!(e.products.is_empty());
    }
}
