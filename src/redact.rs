//! Keeps API tokens out of every text a person or a file can see, by masking them by value.
//!
//! Tokens are registered once when credentials are read; every log line, error message, stored
//! failure message and panic message goes through [`mask`] on its way out.

use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a masked secret looks like in output.
pub(crate) const MASK: &str = "***";

/// Remembers `secret` so that [`mask`] hides it from now on. Short values are ignored: masking
/// them would garble ordinary text, and real tokens are long.
pub(crate) fn register(secret: &str) {
    if secret.len() < 6 {
        return;
    }
    let mut secrets = SECRETS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so a token that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub(crate) fn mask(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// A token that prints as [`MASK`] in `Debug` and `Display`, so it cannot be logged by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value` and registers it for masking.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The real value, for building a request URL and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A `std::io::Write` that masks secrets in whatever passes through it (used for logs).
pub struct MaskingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Makes panic messages go through the token mask too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("greenrich panicked{location}: {}", mask(&payload));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_everywhere() {
        let secret = Secret::new("d75b3a66374942c5b3c019c698abc2067e151558acbd412b");
        let url = format!(
            "https://api.example/waInstance1/getContactInfo/{}",
            secret.expose()
        );
        assert_eq!(
            mask(&url),
            "https://api.example/waInstance1/getContactInfo/***"
        );
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(mask("nothing here"), "nothing here");
    }

    #[test]
    fn masking_writer_masks_lines() {
        register("writer-secret-123456");
        let mut out = MaskingWriter(Vec::new());
        std::io::Write::write_all(&mut out, b"GET /x/writer-secret-123456 failed\n").unwrap();
        assert_eq!(String::from_utf8(out.0).unwrap(), "GET /x/*** failed\n");
    }
}
