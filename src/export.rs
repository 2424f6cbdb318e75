//! Writes results to files: the store's tables to CSV with the same columns, `enriched.csv` (the
//! input's own rows with the results added), neutralising cells that a spreadsheet would run as
//! formulas (names come from strangers), and the run's summary as JSON for monitoring.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use futures::StreamExt;

use crate::chat_id::Messenger;
use crate::normalise::parse_time;
use crate::pipeline::task::{self, TaskDied};
use crate::redact::mask;
use crate::source::{csv_file, workbook, Source, SourceError};
use crate::store::ledger::RunSummary;
use crate::store::read::{
    DumpError, ExportedTable, StoreReader, ENRICHED_COLUMNS, EXPORTED_TABLES,
};
use crate::store::{StoreError, StoreLocation};

/// The CSV files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file cannot be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input cannot be read again.
    #[error(transparent)]
    Input(#[from] SourceError),
    /// `--changed-since` names a run the store does not have.
    #[error("the store has no run #{0}: `greenrich status` lists the last runs")]
    NoSuchRun(i64),
    /// The export's thread died.
    #[error(transparent)]
    Task(#[from] TaskDied),
}

/// Prefixes a cell that starts like a formula with `'`, unless it is a plain number.
pub(crate) fn neutralise(cell: &str) -> Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.trim().parse::<f64>().is_err() {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `enriched.csv`: the input's own rows, each followed by what greenrich knows of it.
pub(crate) struct EnrichedCsv {
    /// The input (a CSV file or a workbook; a table's rows are joined in its database).
    pub(crate) source: Source,
    /// The name its rows are linked under.
    pub(crate) source_name: String,
    /// The added columns' prefix, such as `whatsapp_`.
    pub(crate) prefix: String,
}

impl EnrichedCsv {
    /// `enriched.csv` of `source`, whose rows are linked under `source_name` (default: the file
    /// name), with the added columns named `prefix…` (default: `whatsapp_`, `max_` or `telegram_`).
    pub(crate) fn new(
        source: &Source,
        source_name: Option<String>,
        prefix: Option<String>,
        messenger: Messenger,
    ) -> Self {
        EnrichedCsv {
            source: source.clone(),
            source_name: source_name.unwrap_or_else(|| source.default_name()),
            prefix: prefix.unwrap_or_else(|| format!("{}_", messenger.as_str())),
        }
    }
}

/// A cell as written: neutralised unless `raw`.
fn cell_out(cell: &str, raw: bool) -> String {
    match raw {
        true => cell.to_string(),
        false => neutralise(cell).into_owned(),
    }
}

/// Writes `contacts.csv`, `products.csv` and `failures.csv` from the store at `db` into `dir`,
/// and `enriched.csv` when `enriched` names a file input; returns rows per file.
///
/// Writing files and re-reading the input block: the export runs on a blocking thread, which
/// drives the store's reads itself (on the runtime's I/O), so no runtime worker waits on a disk.
pub(crate) async fn export_csv(
    db: &StoreLocation,
    out: CsvOut,
    enriched: Option<EnrichedCsv>,
) -> Result<Vec<(String, u64)>, ExportError> {
    let db = db.clone();
    let runtime = tokio::runtime::Handle::current();
    let writing =
        tokio::task::spawn_blocking(move || runtime.block_on(write_csv(&db, out, enriched)));
    task::join("the CSV export", writing).await?
}

/// Where and how the CSV files are written.
#[derive(Debug, Clone)]
pub(crate) struct CsvOut {
    /// The folder.
    pub(crate) dir: PathBuf,
    /// Cells as they are, formulas not neutralised.
    pub(crate) raw: bool,
    /// Only what changed since then (a delta for a CRM sync): contacts and their products, and
    /// the input's rows of those contacts; no `failures.csv`.
    pub(crate) changed_since: Option<ChangedSince>,
}

/// `--changed-since`: a run (its changes and later ones) or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedSince {
    /// Since run N began.
    Run(i64),
    /// Since this time.
    Time(DateTime<Utc>),
}

impl std::str::FromStr for ChangedSince {
    type Err = crate::domain::InvalidValue;

    /// A run id (digits), or a UTC time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(ChangedSince::Run).map_err(|_| {
                crate::domain::InvalidValue(format!("'{text}' is too large for a run id"))
            });
        }
        let naive = |format: &str| chrono::NaiveDateTime::parse_from_str(text, format).ok();
        let time = parse_time(text)
            .or_else(|| naive("%Y-%m-%d %H:%M:%S").map(|t| t.and_utc()))
            .or_else(|| naive("%Y-%m-%d %H:%M").map(|t| t.and_utc()))
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            });
        time.map(ChangedSince::Time).ok_or_else(|| {
            crate::domain::InvalidValue(format!(
                "'{text}' is neither a run id nor a time: use a run number from `greenrich status`, or a UTC time such as 2026-12-01 or 2026-12-01T06:00:00Z"
            ))
        })
    }
}

/// [`export_csv`], on the thread that may block.
async fn write_csv(
    db: &StoreLocation,
    out: CsvOut,
    enriched: Option<EnrichedCsv>,
) -> Result<Vec<(String, u64)>, ExportError> {
    let mut store = StoreReader::open(db).await?;
    let since = match out.changed_since {
        None => None,
        Some(ChangedSince::Time(at)) => Some(at),
        Some(ChangedSince::Run(id)) => Some(
            store
                .run_started_at(id)
                .await?
                .ok_or(ExportError::NoSuchRun(id))?,
        ),
    };
    let mut written = Vec::new();
    for table in &EXPORTED_TABLES {
        if since.is_some() && table.changed_since.is_none() {
            continue;
        }
        written.push(write_table(&mut store, table, &out, since).await?);
    }
    let Some(enriched) = enriched else {
        return Ok(written);
    };
    let (dir, raw) = (out.dir.as_path(), out.raw);
    let rows = match &enriched.source {
        Source::Csv { path, options, .. } => {
            let file = csv_file::open_file(path, options, true)?;
            let (headers, delimiter) = (file.headers.clone(), file.delimiter);
            let rows = (1..).zip(file.raw_rows());
            let input = Input {
                headers,
                delimiter,
                rows,
            };
            write_enriched(&mut store, &enriched, dir, raw, since, input).await?
        }
        Source::Workbook { path, sheet, .. } => {
            let book = workbook::open_workbook(path, sheet.as_deref())?;
            let rows = book.rows().map(|(number, _, fields)| (number, Ok(fields)));
            let headers = book.headers.clone();
            let input = Input {
                headers,
                delimiter: b',',
                rows,
            };
            write_enriched(&mut store, &enriched, dir, raw, since, input).await?
        }
        // A table's rows are joined to the `enriched` view in the database itself.
        Source::Sqlite { .. } | Source::Server { .. } => return Ok(written),
    };
    written.push(("enriched.csv".into(), rows));
    Ok(written)
}

/// Writes `table` (its rows changed `since`, when given) as `TABLE.csv`; its name and rows.
async fn write_table(
    store: &mut StoreReader,
    table: &ExportedTable,
    out: &CsvOut,
    since: Option<DateTime<Utc>>,
) -> Result<(String, u64), ExportError> {
    let name = format!("{}.csv", table.name);
    let path = out.dir.join(&name);
    let file = crate::private::create(&path).map_err(|e| file_error(&path, e))?;
    let mut file = csv::Writer::from_writer(file);
    let mut header = true;
    let rows = store
        .dump_table(table, since, |record| {
            // The header row is column names: never neutralised.
            let raw = out.raw || std::mem::take(&mut header);
            file.write_record(record.iter().map(|cell| cell_out(cell, raw)))
                .map_err(Into::into)
        })
        .await
        .map_err(|e| match e {
            DumpError::Store(e) => ExportError::Store(e),
            DumpError::Sink(e) => file_error(&path, e),
        })?;
    file.flush().map_err(|e| file_error(&path, e))?;
    Ok((name, rows))
}

fn file_error(path: &Path, source: std::io::Error) -> ExportError {
    ExportError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// The input file, read again.
struct Input<R> {
    headers: Vec<String>,
    delimiter: u8,
    /// Data row number, fields.
    rows: R,
}

/// Copies every input row, in order and as it is, each followed by the `enriched` view's cells
/// for it (empty for a row the store has no link for); with `since`, only the rows whose
/// contact changed since then. UTF-8 with a BOM, so Excel shows Cyrillic right, and the input's
/// own delimiter.
async fn write_enriched<R>(
    store: &mut StoreReader,
    enriched: &EnrichedCsv,
    dir: &Path,
    raw: bool,
    since: Option<DateTime<Utc>>,
    input: Input<R>,
) -> Result<u64, ExportError>
where
    R: Iterator<Item = (u64, Result<Vec<String>, SourceError>)>,
{
    let Input {
        headers,
        delimiter,
        rows,
    } = input;
    let path = dir.join("enriched.csv");
    let mut out = enriched_file(&path, delimiter)?;
    let write_error = |e: csv::Error| file_error(&path, e.into());
    let mut header = headers;
    header.extend(
        ENRICHED_COLUMNS
            .iter()
            .map(|c| format!("{}{c}", enriched.prefix)),
    );
    out.write_record(&header).map_err(write_error)?;
    let mut links = std::pin::pin!(store.enriched_rows(&enriched.source_name, since));
    let mut next = links.next().await.transpose()?;
    let (mut written, mut linked) = (0, 0);
    for (number, fields) in rows {
        let mut record = fields?;
        while next.as_ref().is_some_and(|link| link.position < number) {
            next = links.next().await.transpose()?;
        }
        match next.as_ref().filter(|link| link.position == number) {
            Some(link) => {
                linked += 1;
                record.extend(link.cells.iter().map(|cell| cell_out(cell, raw)));
            }
            // A delta has only the rows of contacts that changed.
            None if since.is_some() => continue,
            None => record.extend(ENRICHED_COLUMNS.iter().map(|_| String::new())),
        }
        out.write_record(&record).map_err(write_error)?;
        written += 1;
    }
    out.flush().map_err(|e| file_error(&path, e))?;
    if written > 0 && linked == 0 {
        tracing::warn!(
            "the store has no rows of source '{}': enriched.csv has empty WhatsApp columns; \
             check --source-name (the input's file name by default)",
            enriched.source_name
        );
    }
    Ok(written)
}

/// `enriched.csv`, created: UTF-8 with a BOM, so Excel shows Cyrillic right, and `delimiter`.
fn enriched_file(
    path: &Path,
    delimiter: u8,
) -> Result<csv::Writer<std::io::BufWriter<std::fs::File>>, ExportError> {
    let mut file = crate::private::create(path).map_err(|e| file_error(path, e))?;
    file.write_all(b"\xEF\xBB\xBF")
        .map_err(|e| file_error(path, e))?;
    Ok(csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(std::io::BufWriter::new(file)))
}

/// Writes the run's summary as JSON to `path`; a failure is a warning (the run is done).
pub(crate) fn write_summary_json(path: &Path, summary: &RunSummary) {
    let text = serde_json::to_string_pretty(summary).unwrap_or_default();
    if let Err(e) = std::fs::write(path, mask(&text).as_bytes()) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1 555 trick"), "'+1 555 trick");
        assert_eq!(neutralise("-2+3"), "'-2+3");
        assert_eq!(neutralise("@admin"), "'@admin");
        assert_eq!(neutralise("Anna"), "Anna");
        assert_eq!(neutralise("-1"), "-1");
        assert_eq!(neutralise(""), "");
    }
}
