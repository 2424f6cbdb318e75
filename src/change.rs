//! What changed in a contact between two fetches: the fields a CRM keeps, compared one by one,
//! and a fingerprint of them all (pure).
//!
//! Compared: `name`, `contact_name`, `email`, `category`, `description`, `avatar` (the picture's
//! address without its query string: WhatsApp signs avatar URLs with tokens that expire, so the
//! same picture comes back under a new query), `is_business` and `products` (every card's id,
//! name, description, price, availability, hidden flag, review status and image address, in
//! order). Left out, because they move on their own: `last_seen_at` (WhatsApp and MAX), the
//! instance's own chat settings for the contact (`is_archived`, `is_muted`, `is_disappearing`,
//! `message_expiration`, `mute_expiration`), `raw_json` and `fetched_at`.

use chrono::{DateTime, Utc};

use crate::normalise::{ContactRow, ProductRow};

/// The compared fields of one contact, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tracked {
    pub(crate) name: Option<String>,
    pub(crate) contact_name: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) category: Option<String>,
    pub(crate) description: Option<String>,
    /// The avatar's address without its query string.
    pub(crate) avatar: Option<String>,
    pub(crate) is_business: Option<bool>,
    /// A fingerprint of the product cards, in order.
    pub(crate) products: u64,
}

/// What one fetch found, against the contact's last stored fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Never stored before.
    New,
    /// At least one compared field differs.
    Changed,
    /// Every compared field is the same.
    Unchanged,
}

impl Change {
    /// The stored word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

impl Tracked {
    /// The compared fields of a fetched contact and its products.
    pub(crate) fn of(contact: &ContactRow, products: &[ProductRow]) -> Tracked {
        Tracked {
            name: contact.name.clone(),
            contact_name: contact.contact_name.clone(),
            email: contact.email.clone(),
            category: contact.category.clone(),
            description: contact.description.clone(),
            avatar: contact.avatar_url.as_deref().map(without_query),
            is_business: contact.is_business,
            products: products_fingerprint(products),
        }
    }

    /// The names of the fields that differ from `old`, in a fixed order.
    pub(crate) fn changed_fields(&self, old: &Tracked) -> Vec<&'static str> {
        let pairs = [
            ("name", self.name != old.name),
            ("contact_name", self.contact_name != old.contact_name),
            ("email", self.email != old.email),
            ("category", self.category != old.category),
            ("description", self.description != old.description),
            ("avatar", self.avatar != old.avatar),
            ("is_business", self.is_business != old.is_business),
            ("products", self.products != old.products),
        ];
        pairs
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| name)
            .collect()
    }

    /// The fingerprint of every compared field, as 16 hex digits.
    pub(crate) fn fingerprint(&self) -> String {
        let mut hash = Fnv::default();
        for field in [
            &self.name,
            &self.contact_name,
            &self.email,
            &self.category,
            &self.description,
            &self.avatar,
        ] {
            hash.field(field.as_deref());
        }
        hash.field(self.is_business.map(|b| if b { "1" } else { "0" }));
        hash.field(Some(&self.products.to_string()));
        format!("{:016x}", hash.0)
    }
}

/// A contact's change history, as stored beside it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct History {
    pub(crate) first_seen_at: DateTime<Utc>,
    pub(crate) changed_at: DateTime<Utc>,
    /// The run that last found it new or changed.
    pub(crate) changed_run: Option<i64>,
    pub(crate) fetches_changed: i64,
    pub(crate) fetches_unchanged: i64,
    /// The time before each fetch that found a change (since the fetch before it), summed.
    pub(crate) changed_seconds: f64,
    /// The time before each fetch that found no change, summed.
    pub(crate) unchanged_seconds: f64,
}

/// What the store held of a contact before a fetch.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// Its fingerprint (`None`: stored before change tracking).
    pub(crate) fingerprint: Option<String>,
    /// Its compared fields, read only when the fingerprint differs (to name what changed).
    pub(crate) tracked: Option<Tracked>,
    pub(crate) fetched_at: DateTime<Utc>,
    pub(crate) history: History,
}

impl Stored {
    /// Whether a fetch whose fingerprint is `fingerprint` may differ from it (then its fields
    /// are read, to compare them one by one).
    pub(crate) fn may_differ(&self, fingerprint: &str) -> bool {
        self.fingerprint.as_deref() != Some(fingerprint)
    }
}

/// A fetch compared with what was stored.
#[derive(Debug, Clone)]
pub(crate) struct Compared {
    pub(crate) change: Change,
    /// The fields that changed (none for a new or unchanged contact).
    pub(crate) fields: Vec<&'static str>,
    pub(crate) fingerprint: String,
    /// The history with this fetch added.
    pub(crate) history: History,
}

/// Compares `fetched` (whose fingerprint is `fingerprint`, fetched at `fetched_at` by run `run`)
/// with what was `stored` of it, if anything.
pub(crate) fn compare(
    stored: Option<&Stored>,
    fetched: &Tracked,
    fingerprint: String,
    fetched_at: DateTime<Utc>,
    run: i64,
) -> Compared {
    let Some(stored) = stored else {
        let history = History {
            first_seen_at: fetched_at,
            changed_at: fetched_at,
            changed_run: Some(run),
            fetches_changed: 0,
            fetches_unchanged: 0,
            changed_seconds: 0.0,
            unchanged_seconds: 0.0,
        };
        return Compared {
            change: Change::New,
            fields: Vec::new(),
            fingerprint,
            history,
        };
    };
    let fields = match (&stored.tracked, stored.may_differ(&fingerprint)) {
        (Some(old), true) => fetched.changed_fields(old),
        _ => Vec::new(),
    };
    let since = (fetched_at - stored.fetched_at).as_seconds_f64().max(0.0);
    let mut history = stored.history.clone();
    let change = if fields.is_empty() {
        history.fetches_unchanged += 1;
        history.unchanged_seconds += since;
        Change::Unchanged
    } else {
        history.fetches_changed += 1;
        history.changed_seconds += since;
        history.changed_at = fetched_at;
        history.changed_run = Some(run);
        Change::Changed
    };
    Compared {
        change,
        fields,
        fingerprint,
        history,
    }
}

/// A fingerprint of the product cards, in order (0 for none).
pub(crate) fn products_fingerprint(products: &[ProductRow]) -> u64 {
    if products.is_empty() {
        return 0;
    }
    let mut hash = Fnv::default();
    for p in products {
        for field in [
            Some(p.product_id.as_str()),
            p.name.as_deref(),
            p.description.as_deref(),
            p.price.as_deref(),
            p.availability.as_deref(),
            p.review_status.as_deref(),
            p.image_url.as_deref().map(without_query).as_deref(),
        ] {
            hash.field(field);
        }
        hash.field(p.is_hidden.map(|b| if b { "1" } else { "0" }));
    }
    hash.0
}

/// An address without its query string.
pub(crate) fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

/// FNV-1a, 64 bits: stable across Rust versions and machines, unlike the standard hasher, so a
/// stored fingerprint stays comparable.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// One field, told apart from a missing one and from its neighbours.
    fn field(&mut self, value: Option<&str>) {
        match value {
            None => self.byte(0x1e),
            Some(text) => {
                text.bytes().for_each(|b| self.byte(b));
                self.byte(0x1f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_id::Messenger;

    fn contact() -> ContactRow {
        ContactRow {
            chat_id: "79001234567@c.us".into(),
            messenger: Messenger::Whatsapp,
            phone: None,
            name: Some("Anna".into()),
            contact_name: None,
            email: None,
            category: None,
            description: Some("Bakery".into()),
            avatar_url: Some("https://pps.whatsapp.net/v/t61/1.jpg?oh=a&oe=1".into()),
            is_business: Some(true),
            last_seen_at: Some("2026-01-01T00:00:00Z".into()),
            is_archived: Some(false),
            is_muted: Some(false),
            is_disappearing: None,
            message_expiration: None,
            mute_expiration: None,
            raw_json: "{}".into(),
            fetched_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn fields_that_move_on_their_own_are_not_changes() {
        let old = Tracked::of(&contact(), &[]);
        let mut moved = contact();
        moved.last_seen_at = Some("2026-02-01T00:00:00Z".into());
        moved.avatar_url = Some("https://pps.whatsapp.net/v/t61/1.jpg?oh=b&oe=2".into());
        moved.is_muted = Some(true);
        moved.raw_json = "{\"lastSeen\":1}".into();
        let new = Tracked::of(&moved, &[]);
        assert!(new.changed_fields(&old).is_empty());
        assert_eq!(new.fingerprint(), old.fingerprint());
    }

    #[test]
    fn each_compared_field_is_named_when_it_changes() {
        let old = Tracked::of(&contact(), &[]);
        let mut edited = contact();
        edited.name = Some("Anna K".into());
        edited.avatar_url = Some("https://pps.whatsapp.net/v/t61/2.jpg".into());
        let product = ProductRow {
            product_id: "1".into(),
            position: 0,
            name: Some("Bread".into()),
            description: None,
            price: Some("1.00".into()),
            availability: None,
            is_hidden: None,
            review_status: None,
            image_url: None,
            image_preview_url: None,
        };
        let new = Tracked::of(&edited, std::slice::from_ref(&product));
        assert_eq!(new.changed_fields(&old), ["name", "avatar", "products"]);
        assert_ne!(new.fingerprint(), old.fingerprint());
        let repriced = ProductRow {
            price: Some("1.10".into()),
            ..product.clone()
        };
        assert_ne!(
            products_fingerprint(&[product]),
            products_fingerprint(&[repriced])
        );
    }

    #[test]
    fn a_fetch_counts_as_new_changed_or_unchanged_with_its_interval() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let day = chrono::Duration::days(1);
        let first = Tracked::of(&contact(), &[]);
        let new = compare(None, &first, first.fingerprint(), t0, 1);
        assert_eq!((new.change, new.history.first_seen_at), (Change::New, t0));
        let stored = Stored {
            fingerprint: Some(first.fingerprint()),
            tracked: Some(first.clone()),
            fetched_at: t0,
            history: new.history,
        };
        let same = compare(Some(&stored), &first, first.fingerprint(), t0 + day, 2);
        assert_eq!(same.change, Change::Unchanged);
        assert_eq!(same.history.fetches_unchanged, 1);
        assert_eq!(same.history.unchanged_seconds, 86_400.0);
        assert_eq!(same.history.changed_at, t0);
        let mut renamed = contact();
        renamed.name = Some("Ann".into());
        let renamed = Tracked::of(&renamed, &[]);
        let changed = compare(
            Some(&stored),
            &renamed,
            renamed.fingerprint(),
            t0 + day * 3,
            3,
        );
        assert_eq!(changed.change, Change::Changed);
        assert_eq!(changed.fields, ["name"]);
        assert_eq!(changed.history.changed_seconds, 3.0 * 86_400.0);
        assert_eq!(changed.history.changed_run, Some(3));
        assert_eq!(changed.history.changed_at, t0 + day * 3);
    }

    #[test]
    fn a_missing_field_differs_from_an_empty_one() {
        let mut a = Tracked::default();
        let b = Tracked::default();
        a.email = Some(String::new());
        assert_eq!(a.changed_fields(&b), ["email"]);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
