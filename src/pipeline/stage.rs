//! Staging: reads the whole input into the stager. Three stages overlap: reading, normalising
//! (on a blocking thread: phone parsing is the costly part) and staging in SQLite. Every row's
//! link is recorded; values that cannot be chat ids become permanent failures and cost no call;
//! a first batch of mostly invalid values stops the run (the wrong-column guard).

use std::collections::HashSet;

use tokio::sync::mpsc;

use crate::chat_id::{self, Messenger, Notation};
use crate::pipeline::stop::Stop;
use crate::pipeline::task::{self, TaskDied};
use crate::reason::Reason;
use crate::source::{Opened, Record, SourceError};
use crate::store::ledger::RunCounts;
use crate::store::links::{InputLink, LinkOwner};
use crate::store::plan::StagedKeys;
use crate::store::staging::{InputKey, Stager};
use crate::store::writer::{FailedKey, RetryDelays};
use crate::store::StoreError;
use crate::suppression::SuppressionList;

/// The input could not be staged whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StageError {
    /// The input cannot be read.
    #[error("{0}")]
    Input(#[from] SourceError),
    /// The store cannot be written.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The reader or the normaliser died.
    #[error(transparent)]
    Task(#[from] TaskDied),
    /// Nearly every value of the column read is invalid: the column, delimiter or encoding is
    /// probably wrong.
    #[error("{0}")]
    MostlyInvalid(String),
}

/// Values longer than this are cut in failure rows (a 1 MB cell must not become a 1 MB key).
const MAX_KEY_CHARS: usize = 200;

/// The share of invalid values, among at least [`GUARD_MIN_VALUES`], that stops a run before any
/// call: the column, delimiter or encoding is then probably wrong.
const GUARD_SHARE: f64 = 0.9;
const GUARD_MIN_VALUES: u64 = 20;

/// One batch of input rows, normalised.
pub(crate) struct NormalisedBatch {
    rows: u64,
    valid: Vec<InputKey>,
    invalid: Vec<FailedKey>,
    /// Rows whose value is a person on the do-not-process list: neither staged nor kept.
    suppressed: u64,
    /// Every row's link (positions are given when staged).
    links: Vec<InputLink>,
    /// Rows that could not be read, for the log.
    warnings: Vec<String>,
}

/// What a real run records while staging (a dry run records nothing): invalid values as
/// failures, and every row's link.
pub(crate) struct Recording<'a> {
    pub(crate) messenger: Messenger,
    pub(crate) delays: &'a RetryDelays,
    pub(crate) links: LinkOwner<'a>,
    /// The rows' ids come from the data, and may repeat or be empty.
    pub(crate) ids_from_data: bool,
}

impl Recording<'_> {
    /// Records `batch`'s invalid values and links.
    async fn record(&self, stager: &mut Stager, batch: &NormalisedBatch) -> Result<(), StoreError> {
        if !batch.invalid.is_empty() {
            stager
                .record_invalid(
                    &batch.invalid,
                    self.messenger,
                    self.links.seen_at,
                    self.delays,
                )
                .await?;
        }
        stager.record_links(self.links, &batch.links).await
    }
}

/// Keeps each row's id unique within one read, so that every input row has a link of its own: a
/// row without an id is linked as `#ROW`, and a row whose id an earlier row had as `ID#ROW`
/// (`ROW`: its place in the input). Only 64-bit hashes of the ids are kept.
#[derive(Default)]
struct RowIds {
    seen: HashSet<u64>,
    empty: u64,
    repeated: u64,
    example: Option<String>,
}

impl RowIds {
    fn unique(&mut self, row_ref: &mut String, position: u64) {
        if row_ref.trim().is_empty() {
            self.empty += 1;
            *row_ref = format!("#{position}");
        } else if !self.seen.insert(hash_of(row_ref)) {
            self.repeated += 1;
            self.example.get_or_insert_with(|| row_ref.clone());
            *row_ref = format!("{row_ref}#{position}");
        }
    }

    /// What was renamed, for the log.
    fn report(&self, source_name: &str) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(example) = &self.example {
            parts.push(format!(
                "{} rows repeat an id that an earlier row has (such as '{}'): each is linked as ID#ROW",
                self.repeated,
                cut(example)
            ));
        }
        if self.empty > 0 {
            parts.push(format!(
                "{} rows have no id: each is linked as #ROW",
                self.empty
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "in {source_name}, {} (ROW is the row's place in the input), so every row keeps a link of its own",
                parts.join("; ")
            )
        })
    }
}

fn hash_of(text: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(text)
}

/// What has been read so far.
#[derive(Default)]
struct Read {
    counts: RunCounts,
    /// Valid values, duplicates included.
    valid: u64,
    row_ids: RowIds,
}

impl Read {
    /// Counts `batch` and gives its rows their places in the input; with `ids_from_data`, keeps
    /// their ids unique.
    fn number(&mut self, batch: &mut NormalisedBatch, ids_from_data: bool) {
        for (i, link) in batch.links.iter_mut().enumerate() {
            link.position = self.counts.input_rows + i as u64 + 1;
            if ids_from_data {
                self.row_ids.unique(&mut link.row_ref, link.position);
            }
        }
        self.counts.input_rows += batch.rows;
        self.counts.invalid += batch.invalid.len() as u64;
        self.counts.suppressed += batch.suppressed;
        self.valid += batch.valid.len() as u64;
    }
}

/// What the wrong-column guard says when it stops a run.
pub(crate) struct ColumnGuard {
    /// The column read.
    pub(crate) column: String,
    /// Every column found.
    pub(crate) columns: Vec<String>,
    /// How the input was read (delimiter, encoding), when it is a file.
    pub(crate) format: String,
}

/// Reads `opened` to the end through `normalise` into `stager`; returns the staged keys and the
/// input counts, or no keys when the run stopped while reading (`stop`: a deadline, a signal).
/// What was read by then stays recorded (row links, invalid values); rows not read are not
/// taken for gone. A reader or normaliser that dies fails the run: half an input is never taken
/// for all of it. With a `guard`, a first batch of mostly invalid values stops the run before
/// anything is recorded.
pub(crate) async fn stage_input(
    opened: Opened,
    normalise: impl Fn(Vec<Record>) -> NormalisedBatch + Send + 'static,
    mut stager: Stager,
    recording: Option<Recording<'_>>,
    guard: Option<ColumnGuard>,
    source_name: &str,
    stop: &Stop,
) -> Result<(Option<StagedKeys>, RunCounts), StageError> {
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
    let mut read = Read::default();
    let mut guard = guard;
    loop {
        let next = tokio::select! {
            next = batches_rx.recv() => next,
            () = stop.stopped() => break,
        };
        let Some(batch) = next else {
            break;
        };
        if let Some(guard) = guard.take() {
            check_column(&guard, &batch)?;
        }
        stage_batch(batch, &mut read, &mut stager, recording.as_ref()).await?;
    }
    // Stopped: the reader and the normaliser end as soon as they find nobody listening.
    drop(batches_rx);
    task::join("the input normaliser", normaliser).await?;
    task::join("the input reader", reader).await??;
    if stop.reason().is_some() {
        tracing::warn!(
            "the run stopped while reading {source_name}: {} rows were read and linked; no call is made, and the next run reads the input again",
            read.counts.input_rows
        );
        return Ok((None, read.counts));
    }
    let (keys, counts) = end_staging(stager, read, recording.as_ref(), source_name).await?;
    Ok((Some(keys), counts))
}

/// Ends the staging of a whole input: what it says about the input, the rows gone from it (in
/// a real run), and each key kept once.
async fn end_staging(
    mut stager: Stager,
    read: Read,
    recording: Option<&Recording<'_>>,
    source_name: &str,
) -> Result<(StagedKeys, RunCounts), StageError> {
    let Read {
        mut counts,
        valid,
        row_ids,
    } = read;
    if counts.input_rows == 0 {
        tracing::warn!("{source_name} has a header but no rows: nothing to do");
    }
    if let Some(renamed) = row_ids.report(source_name) {
        tracing::warn!("{renamed}");
    }
    if let Some(recording) = recording {
        // The whole source was read: rows it no longer has are gone from it.
        let gone = stager.forget_unseen(recording.links).await?;
        if gone > 0 {
            tracing::info!("{gone} rows of {source_name} seen before are gone from it");
        }
    }
    let (keys, distinct) = stager.finish().await?;
    counts.duplicates = valid - distinct;
    Ok((keys, counts))
}

/// Stages one normalised batch, numbering its rows, and records it in a real run.
async fn stage_batch(
    mut batch: NormalisedBatch,
    read: &mut Read,
    stager: &mut Stager,
    recording: Option<&Recording<'_>>,
) -> Result<(), StageError> {
    for warning in &batch.warnings {
        tracing::warn!("{warning}");
    }
    read.number(&mut batch, recording.is_some_and(|r| r.ids_from_data));
    stager.stage(&batch.valid).await?;
    if let Some(recording) = recording {
        recording.record(stager, &batch).await?;
    }
    Ok(())
}

/// The wrong-column guard, on the first batch of rows.
fn check_column(guard: &ColumnGuard, batch: &NormalisedBatch) -> Result<(), StageError> {
    let invalid = batch.invalid.len() as u64;
    if batch.rows < GUARD_MIN_VALUES || (invalid as f64) < GUARD_SHARE * batch.rows as f64 {
        return Ok(());
    }
    let samples: Vec<String> = batch
        .links
        .iter()
        .filter(|l| l.chat_id.is_none())
        .filter_map(|l| l.input_value.as_deref())
        .filter(|v| !v.trim().is_empty())
        .take(2)
        .map(|v| format!("'{v}'"))
        .collect();
    let columns: Vec<String> = guard.columns.iter().map(|c| format!("'{c}'")).collect();
    Err(StageError::MostlyInvalid(format!(
        "{invalid} of the first {} values in column '{}'{} are not phone numbers or chat ids{}: \
         the column, the delimiter or the encoding is probably wrong. The columns found are {}. \
         Choose one with --column (or --delimiter, --encoding), or pass --allow-mostly-invalid \
         to go on; no call was made",
        batch.rows,
        guard.column,
        guard.format,
        if samples.is_empty() {
            String::new()
        } else {
            format!(" (such as {})", samples.join(", "))
        },
        columns.join(", "),
    )))
}

/// Normalises one batch of records as `notation` reads them, leaving out the people on the
/// do-not-process list `suppressed` (pure).
pub(crate) fn normalise_batch(
    records: Vec<Record>,
    notation: Notation,
    suppressed: Option<&SuppressionList>,
) -> NormalisedBatch {
    let mut batch = NormalisedBatch {
        rows: records.len() as u64,
        suppressed: 0,
        valid: Vec::with_capacity(records.len()),
        invalid: Vec::new(),
        links: Vec::with_capacity(records.len()),
        warnings: Vec::new(),
    };
    for record in records {
        match record {
            Record::Value {
                line,
                row_ref,
                value,
            } => match chat_id::normalise(&value, notation) {
                Ok(id) if suppressed.is_some_and(|list| list.contains(&id.id)) => {
                    batch.add_suppressed(row_ref)
                }
                Ok(id) => batch.add_valid(line, row_ref, value, id),
                Err(e) => batch.add_invalid(line, row_ref, &value, e.message),
            },
            Record::Unreadable {
                line,
                row_ref,
                message,
            } => batch.add_unreadable(line, row_ref, message),
        }
    }
    batch
}

impl NormalisedBatch {
    /// A row whose value is the chat id `id`.
    fn add_valid(&mut self, line: u64, row_ref: String, value: String, id: chat_id::ChatId) {
        self.links.push(link(
            row_ref,
            Some(cut_owned(value)),
            Some(id.id.clone()),
            None,
        ));
        self.valid.push(InputKey {
            chat_id: id.id,
            phone: id.phone,
            line,
        });
    }

    /// A row whose value is a person on the do-not-process list: linked with nothing of them.
    fn add_suppressed(&mut self, row_ref: String) {
        self.suppressed += 1;
        self.links.push(InputLink {
            suppressed: true,
            ..link(row_ref, None, None, None)
        });
    }

    /// A row whose value is no chat id: a permanent failure, keyed by the value itself.
    fn add_invalid(&mut self, line: u64, row_ref: String, value: &str, message: String) {
        let trimmed = value.trim();
        let key = match trimmed.is_empty() {
            true => format!("(empty value, line {line})"),
            false => cut(trimmed),
        };
        let value = cut(value);
        self.links.push(link(
            row_ref,
            Some(value.clone()),
            None,
            Some(message.clone()),
        ));
        self.invalid
            .push(invalid(key, value, Reason::InvalidId, message));
    }

    /// A row that could not be read.
    fn add_unreadable(&mut self, line: u64, row_ref: String, message: String) {
        self.warnings
            .push(format!("input line {line}: {message}; row skipped"));
        self.links
            .push(link(row_ref, None, None, Some(message.clone())));
        let key = format!("(unreadable row, line {line})");
        self.invalid
            .push(invalid(key, String::new(), Reason::UnreadableRow, message));
    }
}

/// A row's link (its place is given when it is staged).
fn link(
    row_ref: String,
    input_value: Option<String>,
    chat_id: Option<String>,
    error: Option<String>,
) -> InputLink {
    InputLink {
        position: 0,
        row_ref,
        input_value,
        chat_id,
        error,
        suppressed: false,
    }
}

/// A value that can never be fetched: a permanent failure that cost no call.
fn invalid(key: String, input_value: String, reason: Reason, message: String) -> FailedKey {
    FailedKey {
        key,
        input_value: Some(input_value),
        reason,
        message,
        http_status: None,
        attempts: 0,
        permanent: true,
        handle: None,
    }
}

/// `text` cut to [`MAX_KEY_CHARS`], moved when it is short enough.
fn cut_owned(text: String) -> String {
    match text.char_indices().nth(MAX_KEY_CHARS) {
        Some(_) => cut(&text),
        None => text,
    }
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
    ) -> Result<RunCounts, StageError> {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("in.csv");
        std::fs::write(&csv, "phone\n79001234567\n79001234568\nbad\n").unwrap();
        let store = Store::open(
            &crate::store::StoreLocation::Sqlite(dir.path().join("out.db")),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        let stager = Stager::new(&store).await.unwrap();
        let opened = source::open(&Source::Csv {
            path: csv,
            column: None,
            id_column: None,
            options: Default::default(),
        })
        .await
        .unwrap();
        let delays = crate::config::PlanPolicy::default().retry_delays();
        let recording = Recording {
            messenger: Messenger::Whatsapp,
            delays: &delays,
            links: LinkOwner {
                source: "in.csv",
                run_id: 1,
                seen_at: chrono::Utc::now(),
            },
            ids_from_data: false,
        };
        stage_input(
            opened,
            normalise,
            stager,
            Some(recording),
            None,
            "in.csv",
            &Stop::default(),
        )
        .await
        .map(|(_, counts)| counts)
    }

    #[tokio::test]
    async fn the_input_is_counted_and_staged() {
        let counts = staged(|r| normalise_batch(r, Notation::of(Messenger::Whatsapp), None))
            .await
            .unwrap();
        assert_eq!((counts.input_rows, counts.invalid), (3, 1));
    }

    #[tokio::test]
    async fn a_normaliser_that_panics_fails_the_run() {
        let result = staged(|_| panic!("normaliser bug")).await;
        let Err(StageError::Task(died)) = result else {
            panic!("a dead normaliser must fail the run, got {result:?}");
        };
        assert!(died.to_string().contains("the input normaliser"), "{died}");
        assert!(died.to_string().contains("normaliser bug"), "{died}");
    }

    #[test]
    fn repeated_and_empty_row_ids_are_made_unique() {
        let mut ids = RowIds::default();
        let got: Vec<String> = [("7", 1), ("", 2), ("7", 3), ("8", 4), (" ", 5), ("7", 6)]
            .into_iter()
            .map(|(id, position)| {
                let mut id = id.to_string();
                ids.unique(&mut id, position);
                id
            })
            .collect();
        assert_eq!(got, ["7", "#2", "7#3", "8", "#5", "7#6"]);
        let said = ids.report("crm").unwrap();
        assert!(
            said.contains("2 rows repeat an id") && said.contains("'7'"),
            "{said}"
        );
        assert!(said.contains("2 rows have no id"), "{said}");
        assert_eq!(RowIds::default().report("crm"), None);
    }

    #[test]
    fn a_listed_person_is_linked_with_nothing_of_them_and_not_staged() {
        use crate::suppression::SuppressionKey;
        let key = SuppressionKey::from_hex(&SuppressionKey::generate().unwrap()).unwrap();
        let list = SuppressionList::new(key.clone(), &[key.digest_hex("79001234567@c.us")]);
        let record = |line: u64, value: &str| Record::Value {
            line,
            row_ref: line.to_string(),
            value: value.into(),
        };
        let records = vec![record(1, "+7 900 123-45-67"), record(2, "+7 900 123-45-68")];
        let batch = normalise_batch(records, Notation::of(Messenger::Whatsapp), Some(&list));
        assert_eq!((batch.rows, batch.suppressed, batch.valid.len()), (2, 1, 1));
        assert_eq!(batch.valid[0].chat_id, "79001234568@c.us");
        let listed = &batch.links[0];
        assert!(listed.suppressed && listed.input_value.is_none() && listed.chat_id.is_none());
        assert_eq!(listed.row_ref, "1");
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(cut("abc"), "abc");
        assert_eq!(cut(&"x".repeat(500)).chars().count(), MAX_KEY_CHARS + 1);
    }
}
