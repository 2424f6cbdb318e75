//! The do-not-process list: people who objected to being processed, kept as keyed hashes
//! (HMAC-SHA-256) of their chat ids and Telegram handles, so that the list holds no phone number
//! in clear. The key is the store's own, drawn from the OS when the first person is listed.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type KeyedHash = Hmac<Sha256>;

/// Bytes of a list's key.
const KEY_BYTES: usize = 32;

/// A store's key for the list's hashes.
#[derive(Clone)]
pub(crate) struct SuppressionKey(KeyedHash);

impl std::fmt::Debug for SuppressionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuppressionKey(…)")
    }
}

impl SuppressionKey {
    /// A new random key, as hex text (kept in the store).
    pub(crate) fn generate() -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::getrandom(&mut bytes)?;
        Ok(to_hex(&bytes))
    }

    /// The key written as hex text by [`SuppressionKey::generate`]; `None` when it is not.
    pub(crate) fn from_hex(text: &str) -> Option<SuppressionKey> {
        let bytes = from_hex(text)?;
        KeyedHash::new_from_slice(&bytes).ok().map(SuppressionKey)
    }

    /// The keyed hash of `key` (a chat id or a Telegram handle).
    pub(crate) fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// [`SuppressionKey::digest`] as the hex text the store keeps.
    pub(crate) fn digest_hex(&self, key: &str) -> String {
        to_hex(&self.digest(key))
    }
}

/// The list as a run reads it once, before staging its input.
#[derive(Debug, Clone)]
pub(crate) struct SuppressionList {
    key: SuppressionKey,
    hashes: HashSet<[u8; 32]>,
}

impl SuppressionList {
    /// The list of `hashes` (hex text; others are ignored) under `key`.
    pub(crate) fn new(key: SuppressionKey, hashes: &[String]) -> SuppressionList {
        let hashes = hashes
            .iter()
            .filter_map(|h| from_hex(h)?.try_into().ok())
            .collect();
        SuppressionList { key, hashes }
    }

    /// Whether `key` (a chat id or a Telegram handle) is on the list.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.hashes.contains(&self.key.digest(key))
    }

    /// How many hashes it holds.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SuppressionKey {
        SuppressionKey::from_hex(&SuppressionKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn a_listed_key_is_found_and_others_are_not() {
        let key = key();
        let list = SuppressionList::new(key.clone(), &[key.digest_hex("79001234567@c.us")]);
        assert!(list.contains("79001234567@c.us"));
        assert!(!list.contains("79001234568@c.us"));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn the_hash_holds_no_digits_of_the_number_and_depends_on_the_key() {
        let (a, b) = (key(), key());
        let hashed = a.digest_hex("79001234567@c.us");
        assert_eq!(hashed.len(), 64);
        assert!(!hashed.contains("9001234567"));
        assert_ne!(hashed, b.digest_hex("79001234567@c.us"));
        // Under another key, the list finds nobody.
        assert!(!SuppressionList::new(b, &[hashed]).contains("79001234567@c.us"));
    }

    #[test]
    fn a_key_that_is_not_hex_is_refused() {
        assert!(SuppressionKey::from_hex("zz").is_none());
        assert!(SuppressionKey::from_hex("abc").is_none());
        assert!(SuppressionKey::from_hex("ф1").is_none());
    }

    proptest! {
        #[test]
        fn hex_reads_back_what_it_wrote(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        }

        #[test]
        fn any_text_is_read_as_hex_or_refused_without_a_panic(text in ".{0,80}") {
            let _ = from_hex(&text);
            let _ = SuppressionKey::from_hex(&text);
        }
    }
}
