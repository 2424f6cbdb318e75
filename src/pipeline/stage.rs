//! Staging: reads the whole input into the planner. Three stages overlap: reading, normalising
//! (on a blocking thread: phone parsing is the costly part) and staging in SQLite. Values that
//! cannot be chat ids become permanent failures and cost no call.

use chrono::Utc;
use tokio::sync::mpsc;

use crate::chat_id::{self, DefaultCountry, Messenger};
use crate::job::JobError;
use crate::pipeline::task;
use crate::reason::Reason;
use crate::source::{Opened, Record};
use crate::store::ledger::RunCounts;
use crate::store::plan::{InputKey, Planner};
use crate::store::writer::{FailedKey, RetryDelays};

/// Values longer than this are cut in failure rows (a 1 MB cell must not become a 1 MB key).
const MAX_KEY_CHARS: usize = 200;

/// One batch of input rows, normalised.
pub(crate) struct NormalisedBatch {
    rows: u64,
    valid: Vec<InputKey>,
    invalid: Vec<FailedKey>,
    /// Rows that could not be read, for the log.
    warnings: Vec<String>,
}

/// Where invalid values go: recorded as failures in a real run, only counted in a dry run.
pub(crate) struct InvalidSink<'a> {
    pub(crate) record: bool,
    pub(crate) messenger: Messenger,
    pub(crate) delays: &'a RetryDelays,
}

/// Reads `opened` to the end through `normalise` into `planner`; returns the input counts. A
/// reader or normaliser that dies fails the run: half an input is never taken for all of it.
pub(crate) async fn stage_input(
    opened: Opened,
    normalise: impl Fn(Vec<Record>) -> NormalisedBatch + Send + 'static,
    planner: &mut Planner,
    invalid: InvalidSink<'_>,
    source_name: &str,
) -> Result<RunCounts, JobError> {
    let (records_tx, mut records_rx) = mpsc::channel(4);
    let reader = tokio::spawn(opened.stream(records_tx));
    let (batches_tx, mut batches_rx) = mpsc::channel::<NormalisedBatch>(4);
    let normaliser = tokio::task::spawn_blocking(move || {
        while let Some(records) = records_rx.blocking_recv() {
            if batches_tx.blocking_send(normalise(records)).is_err() {
                break;
            }
        }
    });
    let mut counts = RunCounts::default();
    let mut valid = 0;
    while let Some(batch) = batches_rx.recv().await {
        for warning in &batch.warnings {
            tracing::warn!("{warning}");
        }
        counts.input_rows += batch.rows;
        counts.invalid += batch.invalid.len() as u64;
        valid += batch.valid.len() as u64;
        planner.stage(&batch.valid).await?;
        if invalid.record && !batch.invalid.is_empty() {
            planner
                .record_invalid(
                    &batch.invalid,
                    invalid.messenger,
                    Utc::now(),
                    invalid.delays,
                )
                .await?;
        }
    }
    task::join("the input normaliser", normaliser).await?;
    task::join("the input reader", reader).await??;
    if counts.input_rows == 0 {
        tracing::warn!("{source_name} has a header but no rows: nothing to do");
    }
    counts.duplicates = valid - planner.distinct().await?;
    Ok(counts)
}

/// Normalises one batch of records for `messenger` (pure).
pub(crate) fn normalise_batch(
    records: Vec<Record>,
    messenger: Messenger,
    country: Option<DefaultCountry>,
) -> NormalisedBatch {
    let invalid = |key: String, input_value: String, reason, message| FailedKey {
        key,
        input_value: Some(input_value),
        reason,
        message,
        http_status: None,
        attempts: 0,
        permanent: true,
    };
    let mut batch = NormalisedBatch {
        rows: records.len() as u64,
        valid: Vec::with_capacity(records.len()),
        invalid: Vec::new(),
        warnings: Vec::new(),
    };
    for record in records {
        match record {
            Record::Value { line, value } => match chat_id::normalise(&value, messenger, country) {
                Ok(id) => batch.valid.push(InputKey {
                    chat_id: id.id,
                    phone: id.phone,
                    line,
                }),
                Err(e) => {
                    let trimmed = value.trim();
                    let key = if trimmed.is_empty() {
                        format!("(empty value, line {line})")
                    } else {
                        cut(trimmed)
                    };
                    let failure = invalid(key, cut(&value), Reason::InvalidId, e.message);
                    batch.invalid.push(failure);
                }
            },
            Record::Unreadable { line, message } => {
                batch
                    .warnings
                    .push(format!("input line {line}: {message}; row skipped"));
                let key = format!("(unreadable row, line {line})");
                batch
                    .invalid
                    .push(invalid(key, String::new(), Reason::UnreadableRow, message));
            }
        }
    }
    batch
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_KEY_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{self, Source};
    use crate::store::Store;

    async fn staged(
        normalise: impl Fn(Vec<Record>) -> NormalisedBatch + Send + 'static,
    ) -> Result<RunCounts, JobError> {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("in.csv");
        std::fs::write(&csv, "phone\n79001234567\n79001234568\nbad\n").unwrap();
        let store = Store::open(
            &dir.path().join("out.db"),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut planner = Planner::new(&store).await.unwrap();
        let opened = source::open(&Source::Csv {
            path: csv,
            column: None,
        })
        .await
        .unwrap();
        let delays = RetryDelays::default();
        let sink = InvalidSink {
            record: true,
            messenger: Messenger::Whatsapp,
            delays: &delays,
        };
        stage_input(opened, normalise, &mut planner, sink, "in.csv").await
    }

    #[tokio::test]
    async fn the_input_is_counted_and_staged() {
        let counts = staged(|r| normalise_batch(r, Messenger::Whatsapp, None))
            .await
            .unwrap();
        assert_eq!((counts.input_rows, counts.invalid), (3, 1));
    }

    #[tokio::test]
    async fn a_normaliser_that_panics_fails_the_run() {
        let result = staged(|_| panic!("normaliser bug")).await;
        let Err(JobError::Task(died)) = result else {
            panic!("a dead normaliser must fail the run, got {result:?}");
        };
        assert!(died.to_string().contains("the input normaliser"), "{died}");
        assert!(died.to_string().contains("normaliser bug"), "{died}");
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(cut("abc"), "abc");
        assert_eq!(cut(&"x".repeat(500)).chars().count(), MAX_KEY_CHARS + 1);
    }
}
