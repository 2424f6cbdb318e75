//! Types every layer shares, at the bottom of the house: nothing here imports from the rest of
//! the crate.

/// A value that cannot be parsed; the message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);
