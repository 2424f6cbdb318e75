//! libphonenumber's metadata patterns, compiled once per thread and anchored at the start. The
//! library looks each pattern up in one cache shared behind a lock (and hashes its source) on
//! every use; the fast path asks several per number.

use std::cell::RefCell;
use std::collections::HashMap;

use phonenumber::metadata::Descriptor;
use regex::{Regex, RegexBuilder};

thread_local! {
    /// Compiled patterns by the address of their source in the library's static metadata
    /// (`None`: one this build of `regex` cannot compile, which the library compiles with it).
    static COMPILED: RefCell<HashMap<usize, Option<Regex>>> = RefCell::new(HashMap::new());
}

/// Whether the metadata pattern `source` matches `text` from its first character, as the
/// library's `find(text)` starting at 0 does (the leftmost match starts at 0 if any does);
/// `None` if the pattern does not compile, and the caller leaves the number to the library.
pub(super) fn matches_at_start(source: &'static str, text: &str) -> Option<bool> {
    COMPILED.with_borrow_mut(|compiled| {
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
