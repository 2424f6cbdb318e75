//! How the page writes text: escaped for HTML and SVG, instance ids shortened, durations in
//! days (pure).

use std::time::Duration;

use crate::progress::format_duration;

/// Text for HTML and SVG.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `7105123402` as `7105…02`, as people recognise an instance.
pub(super) fn shorten(instance: &str) -> String {
    match instance.len() {
        0..=7 => instance.to_string(),
        n => format!("{}…{}", &instance[..4], &instance[n - 2..]),
    }
}

/// `7d` for whole days, else as the progress line writes durations.
pub(super) fn days_or_duration(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ => format_duration(d),
    }
}
