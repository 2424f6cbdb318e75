//! Writes results to files: the store's tables to CSV with the same columns, neutralising cells
//! that a spreadsheet would run as formulas (names come from strangers), and the run's summary
//! as JSON for monitoring.

use std::borrow::Cow;
use std::path::Path;

use crate::redact::mask;
use crate::store::ledger::RunSummary;
use crate::store::read::{DumpError, EXPORTED_TABLES};
use crate::store::{Store, StoreError};

/// The CSV files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file cannot be written.
    #[error("cannot write {0}: {1}")]
    File(String, String),
    /// The store cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Writes `contacts.csv`, `products.csv` and `failures.csv` into `dir`; returns rows per file.
pub(crate) async fn export_csv(
    store: &Store,
    dir: &Path,
    raw: bool,
) -> Result<Vec<(String, u64)>, ExportError> {
    let mut written = Vec::new();
    for (table, order) in EXPORTED_TABLES {
        let name = format!("{table}.csv");
        let path = dir.join(&name);
        let file_error =
            |e: std::io::Error| ExportError::File(path.display().to_string(), e.to_string());
        let mut out = csv::Writer::from_path(&path).map_err(|e| file_error(e.into()))?;
        let mut header = true;
        let rows = store
            .dump_table(table, order, |record| {
                if raw || std::mem::take(&mut header) {
                    return out.write_record(record).map_err(Into::into);
                }
                out.write_record(record.iter().map(|cell| neutralise(cell).into_owned()))
                    .map_err(Into::into)
            })
            .await
            .map_err(|e| match e {
                DumpError::Store(e) => ExportError::Store(e),
                DumpError::Sink(e) => file_error(e),
            })?;
        out.flush().map_err(file_error)?;
        written.push((name, rows));
    }
    Ok(written)
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
