//! libphonenumber's metadata as the phone fast path reads it: each calling code's regions in a
//! table, and the patterns compiled once per thread and anchored at the start. The library
//! collects a code's regions into a new list, and looks each pattern up in one cache shared
//! behind a lock (hashing its source), on every use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use regex::{Regex, RegexBuilder};

thread_local! {
    /// Compiled patterns by the address of their source in the library's static metadata
    /// (`None`: one this build of `regex` cannot compile, which the library compiles with it).
    static COMPILED: RefCell<HashMap<usize, Option<Regex>, BuildHasherDefault<AddressHasher>>> =
        RefCell::default();
}

/// Patterns kept compiled per thread: a few countries' numbers use a few dozen, every country's
/// some thousands (each with its compiled program and search caches).
const MAX_COMPILED: usize = 1024;

/// Hashes an address: already unique, it only needs its bits spread.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Country calling codes have at most three digits.
const CODES: usize = 1000;

/// Each calling code's regions, in the library's order (its main country first).
static REGIONS: LazyLock<Vec<Vec<&'static Metadata>>> = LazyLock::new(|| {
    (0..CODES as u16)
        .map(|code| DATABASE.by_code(&code).unwrap_or_default())
        .collect()
});

/// Loads libphonenumber's metadata (about 0.1 s of CPU, once per process).
pub(super) fn load() {
    LazyLock::force(&REGIONS);
}

/// The regions of calling code `code` (none if it is no code).
pub(super) fn regions(code: u16) -> &'static [&'static Metadata] {
    REGIONS.get(usize::from(code)).map_or(&[], Vec::as_slice)
}

/// Whether the metadata pattern `source` matches `text` from its first character, as the
/// library's `find(text)` starting at 0 does (the leftmost match starts at 0 if any does);
/// `None` if the pattern does not compile, and the caller leaves the number to the library.
pub(super) fn matches_at_start(source: &'static str, text: &str) -> Option<bool> {
    COMPILED.with_borrow_mut(|compiled| {
        if compiled.len() >= MAX_COMPILED && !compiled.contains_key(&(source.as_ptr() as usize)) {
            // Numbers from every country at once: start over rather than grow without bound.
            compiled.clear();
        }
        let pattern = compiled.entry(source.as_ptr() as usize).or_insert_with(|| {
            // Patterns are written with whitespace and may end in a comment: the group closes
            // on a line of its own.
            RegexBuilder::new(&format!("^(?:{source}\n)"))
                .ignore_whitespace(true)
                .build()
                .ok()
        });
        pattern.as_ref().map(|p| p.is_match(text))
    })
}

/// The library's `Descriptor::is_match`: one of its possible lengths (when it names any), and
/// its pattern matching from the start.
pub(super) fn fits(descriptor: &'static Descriptor, national: &str) -> bool {
    let lengths = descriptor.possible_length();
    let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
    (lengths.is_empty() || lengths.contains(&length))
        && matches_at_start(descriptor.national_number().as_str(), national) == Some(true)
}
