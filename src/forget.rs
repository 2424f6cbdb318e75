//! `greenrich forget` and `greenrich purge`: people named on the command line or in a file are
//! found by the keys the store holds them under, then erased, listed or unlisted as not to be
//! processed; retention erases whom no input has mentioned for a while.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::chat_id::{self, Notation};
use crate::source::{self, Record, Source, SourceError};
use crate::store::erase::{Erased, Whom};
use crate::store::{Store, StoreError, StoreLocation};

/// `forget` could not be done; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// A `--phone` value is no phone number.
    #[error("{0}; nothing was changed")]
    NotAPhone(String),
    /// The file of people cannot be read.
    #[error("{0}; nothing was changed")]
    Input(#[from] SourceError),
    /// The file of people names nobody.
    #[error("{0} names nobody (no value in its column); nothing was changed")]
    Empty(String),
    /// The store cannot be changed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Who to forget, as the command line names them.
#[derive(Debug, Default)]
pub(crate) struct People {
    /// Chat ids (or Telegram handles), as the store keys them.
    pub(crate) chat_ids: Vec<String>,
    /// Phone numbers, read as `notation` reads them.
    pub(crate) phones: Vec<String>,
    /// A file whose column holds phone numbers or chat ids, read as `notation` reads them.
    pub(crate) input: Option<Source>,
    pub(crate) notation: Notation,
}

/// What `forget` does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Erase them.
    Erase,
    /// Erase them, and keep them out of every later run.
    EraseAndSuppress,
    /// Take them off the do-not-process list (nothing is erased).
    Unsuppress,
}

/// Runs `forget`; returns what it says it did.
pub(crate) async fn forget(
    location: &StoreLocation,
    people: People,
    action: Action,
    lock_wait: Duration,
) -> Result<String, ForgetError> {
    let (keys, raw) = keys_of(&people).await?;
    let store = Store::open(location, lock_wait).await?;
    let named = keys.len();
    let mut said = match action {
        Action::Unsuppress => {
            let removed = store.unsuppress(&keys).await?;
            format!("took {removed} keys of {named} people off the do-not-process list")
        }
        Action::Erase | Action::EraseAndSuppress => {
            let suppress = action == Action::EraseAndSuppress;
            let erased = store.erase(Whom::Keys(&keys), suppress, Utc::now()).await?;
            erased_line(named, &erased, suppress)
        }
    };
    if raw > 0 {
        said.push_str(&format!(
            "\n{raw} values are no phone number or chat id: they were looked for as written"
        ));
    }
    Ok(said)
}

/// Erases whom no input has mentioned since `now - older_than` (`purge`, `--purge-after`).
pub(crate) async fn purge(
    store: &Store,
    older_than: Duration,
    now: DateTime<Utc>,
) -> Result<Erased, StoreError> {
    let cutoff = purge_cutoff(now, older_than);
    store
        .erase(Whom::NotMentionedSince(cutoff), false, now)
        .await
}

/// Since when an input must have mentioned a key for retention to keep it (saturating: a
/// `--purge-after 100000000d` keeps everything).
pub(crate) fn purge_cutoff(now: DateTime<Utc>, older_than: Duration) -> DateTime<Utc> {
    crate::normalise::time_before(now, older_than)
}

fn erased_line(named: usize, erased: &Erased, suppressed: bool) -> String {
    let whom = if named == 1 { "person" } else { "people" };
    let mut line = format!("forgot {named} {whom}: removed {}", erased.describe());
    if suppressed {
        line.push_str(&format!(
            "; {} keys added to the do-not-process list (later runs skip them with no call)",
            erased.suppressed
        ));
    }
    line
}

/// The keys `people` are stored under, each once, and how many values were no valid phone
/// number or chat id (kept as written: an invalid value's failure is keyed by its text).
async fn keys_of(people: &People) -> Result<(Vec<String>, usize), ForgetError> {
    let mut keys = Vec::new();
    let mut raw = 0;
    for phone in &people.phones {
        match chat_id::normalise(phone, people.notation) {
            Ok(id) => keys.push(id.id),
            Err(e) => {
                return Err(ForgetError::NotAPhone(format!(
                    "--phone '{phone}' is no phone number: {}",
                    e.message
                )))
            }
        }
    }
    let ids = as_chat_ids(people.notation);
    let mut values: Vec<(String, Notation)> =
        people.chat_ids.iter().map(|v| (v.clone(), ids)).collect();
    if let Some(source) = &people.input {
        let read = read_column(source).await?;
        if read.is_empty() {
            return Err(ForgetError::Empty(source.describe()));
        }
        values.extend(read.into_iter().map(|v| (v, people.notation)));
    }
    for (value, notation) in values {
        let (key, valid) = stored_key(&value, notation);
        raw += usize::from(!valid);
        keys.push(key);
    }
    keys.sort_unstable();
    keys.dedup();
    keys.retain(|k| !k.is_empty());
    Ok((keys, raw))
}

/// How values given as chat ids are read: digits are a Telegram user id, never a phone number.
pub(crate) fn as_chat_ids(notation: Notation) -> Notation {
    Notation {
        telegram_ids: true,
        ..notation
    }
}

/// The key the store holds `value` under: its chat id, or the value as written (an invalid
/// value's failure is keyed by its text), with whether it is a valid id.
pub(crate) fn stored_key(value: &str, notation: Notation) -> (String, bool) {
    match chat_id::normalise(value, notation) {
        Ok(id) => (id.id, true),
        Err(_) => (value.trim().to_string(), false),
    }
}

/// The values of `source`'s column.
async fn read_column(source: &Source) -> Result<Vec<String>, SourceError> {
    let opened = source::open(source).await?;
    let (tx, mut rx) = mpsc::channel(4);
    let reader = tokio::spawn(opened.stream(tx));
    let mut values = Vec::new();
    while let Some(records) = rx.recv().await {
        values.extend(records.into_iter().filter_map(|record| match record {
            Record::Value { value, .. } if !value.trim().is_empty() => Some(value),
            _ => None,
        }));
    }
    reader
        .await
        .map_err(|e| SourceError::Unusable(format!("the reader stopped: {e}")))??;
    Ok(values)
}
