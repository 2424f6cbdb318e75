//! `greenrich report`: one self-contained HTML page about a store and its recent runs (the last
//! run, its calls per minute per instance with the 429s, the last 30 runs, the contacts'
//! freshness, and what to do next). The figures are read here; [`html`] lays them out and
//! [`svg`] draws the charts, both pure.

mod advice;
mod html;
mod svg;
mod text;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::normalise::time_before;
use crate::store::ledger::MinuteRow;
use crate::store::ledger::RunRecord;
use crate::store::read::StoreReader;
use crate::store::{StoreError, StoreLocation};

/// The runs the timeline shows.
const TIMELINE_RUNS: i64 = 30;

/// The ages the freshness chart counts contacts by: each bucket holds contacts last fetched
/// within its age and not within the one before.
const AGE_BUCKETS: [(&str, u64); 5] = [
    ("under 1 day", 1),
    ("1–7 days", 7),
    ("7–30 days", 30),
    ("30–90 days", 90),
    ("90–365 days", 365),
];

/// Everything the page shows.
#[derive(Debug, Clone)]
pub(crate) struct PageData {
    /// The store, as people name it (a password masked).
    pub(crate) store: String,
    pub(crate) generated_at: DateTime<Utc>,
    /// `--max-age`: contacts older than this are stale.
    pub(crate) max_age: Duration,
    /// The last runs, newest first.
    pub(crate) runs: Vec<RunRecord>,
    /// The last run's calls per instance and minute.
    pub(crate) minutes: Vec<MinuteRow>,
    /// Contacts by the age of their last fetch: (label, count), youngest first, then older.
    pub(crate) freshness: Vec<(String, i64)>,
    /// All contacts.
    pub(crate) contacts: i64,
    /// Contacts fetched within `max_age`.
    pub(crate) fresh: i64,
    /// Input rows by status: enriched, failed, invalid, pending.
    pub(crate) row_statuses: Vec<(String, i64)>,
}

impl PageData {
    /// The last run, if any.
    pub(crate) fn last_run(&self) -> Option<&RunRecord> {
        self.runs.first()
    }

    /// How many input rows have `status`.
    pub(crate) fn rows_with(&self, status: &str) -> i64 {
        self.row_statuses
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// Each instance's calls and 429s over `minutes`, by instance id.
fn calls_per_instance(minutes: &[MinuteRow]) -> BTreeMap<&str, (u64, u64)> {
    let mut per_instance: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for m in minutes {
        let entry = per_instance.entry(m.instance.as_str()).or_default();
        entry.0 += m.calls;
        entry.1 += m.http_429;
    }
    per_instance
}

/// Reads what the page shows from the store at `db`, as of `now`.
pub(crate) async fn gather(
    db: &StoreLocation,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<PageData, StoreError> {
    let mut store = StoreReader::open(db).await?;
    let runs = store.last_runs(TIMELINE_RUNS).await?;
    let minutes = match runs.first() {
        Some(last) => store.run_minutes(last.id).await?,
        None => Vec::new(),
    };
    let bounds: Vec<DateTime<Utc>> = AGE_BUCKETS
        .iter()
        .map(|(_, days)| time_before(now, Duration::from_secs(days * 86_400)))
        .collect();
    let (within, contacts) = store.fetched_since(&bounds).await?;
    let fresh = store.overview(time_before(now, max_age)).await?.fresh;
    let mut freshness = Vec::new();
    let mut younger = 0;
    for ((label, _), n) in AGE_BUCKETS.iter().zip(&within) {
        freshness.push((label.to_string(), n - younger));
        younger = *n;
    }
    freshness.push(("over a year".to_string(), contacts - younger));
    Ok(PageData {
        store: db.to_string(),
        generated_at: now,
        max_age,
        runs,
        minutes,
        freshness,
        contacts,
        fresh,
        row_statuses: store.row_statuses().await?,
    })
}

/// Writes the report of the store at `db` to `path` (created, or replaced whole).
pub(crate) async fn write(
    db: &StoreLocation,
    path: &Path,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<(), ReportError> {
    let data = gather(db, now, max_age).await?;
    let page = html::render(&data, &advice::advise(&data));
    let temporary = path.with_extension("html.partial");
    crate::private::write(&temporary, page)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| ReportError::Write(path.to_path_buf(), e))
}

/// The report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page cannot be written.
    #[error("cannot write the report {0}: {1}")]
    Write(std::path::PathBuf, std::io::Error),
}
