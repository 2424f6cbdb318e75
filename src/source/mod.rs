//! Input sources: a CSV file or a SQLite table, read as a stream of raw values with their line
//! (or row) numbers. Nothing here normalises; unreadable rows are reported, not fatal.

mod csv_file;
mod sqlite_table;

use std::path::PathBuf;

use tokio::sync::mpsc;

/// Values are sent to the planner in batches of this many.
pub(crate) const BATCH: usize = 2_000;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A CSV file with a header row.
    Csv {
        /// The file.
        path: PathBuf,
        /// The key column (found by name when not given).
        column: Option<String>,
    },
    /// A table in a SQLite database.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The key column (found by name when not given).
        column: Option<String>,
    },
}

impl Source {
    /// A short description for messages and the run ledger.
    pub fn describe(&self) -> String {
        match self {
            Source::Csv { path, .. } => path.display().to_string(),
            Source::Sqlite { path, table, .. } => {
                format!("sqlite:{} table {table}", path.display())
            }
        }
    }
}

/// One input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Value { line: u64, value: String },
    Unreadable { line: u64, message: String },
}

/// The source cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// It cannot be opened, or its table or column is missing.
    #[error("{0}")]
    Unusable(String),
    /// Reading stopped part-way.
    #[error("reading {source_name} stopped at line {line}: {message}")]
    Broken {
        /// The source, described.
        source_name: String,
        /// The last line read.
        line: u64,
        /// Why.
        message: String,
    },
}

/// The key column named on the command line does not exist (the message lists those that do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NoSuchColumn(String);

/// Picks the key column: `wanted` if given (case-insensitive), else the first column named like
/// a phone number or chat id, else the first column.
pub(crate) fn pick_column(headers: &[String], wanted: Option<&str>) -> Result<usize, NoSuchColumn> {
    let listed = || {
        headers
            .iter()
            .map(|h| format!("'{h}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if headers.is_empty() {
        return Err(NoSuchColumn("the input has no columns".into()));
    }
    if let Some(wanted) = wanted {
        return headers
            .iter()
            .position(|h| h == wanted)
            .or_else(|| headers.iter().position(|h| h.eq_ignore_ascii_case(wanted)))
            .ok_or_else(|| {
                NoSuchColumn(format!(
                    "there is no column '{wanted}'; the columns are {}",
                    listed()
                ))
            });
    }
    let simple = |h: &String| -> String {
        h.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let found = headers
        .iter()
        .position(|h| matches!(simple(h).as_str(), "chatid" | "chat" | "whatsapp"))
        .or_else(|| headers.iter().position(|h| simple(h).contains("phone")))
        .or_else(|| {
            headers
                .iter()
                .position(|h| matches!(simple(h).as_str(), "mobile" | "msisdn" | "tel" | "телефон"))
        });
    Ok(found.unwrap_or(0))
}

/// Opens and checks the source (file, table, column) without reading its rows, so a bad input
/// is reported before any call is made.
pub(crate) async fn open(source: &Source) -> Result<Opened, SourceError> {
    match source {
        Source::Csv { path, column } => csv_file::open(path, column.as_deref()).map(Opened::Csv),
        Source::Sqlite {
            path,
            table,
            column,
        } => sqlite_table::open(path, table, column.as_deref())
            .await
            .map(Opened::Sqlite),
    }
}

/// A source that was opened and checked, ready to stream.
pub(crate) enum Opened {
    Csv(csv_file::CsvSource),
    Sqlite(sqlite_table::SqliteSource),
}

impl Opened {
    /// The name of the column read.
    pub(crate) fn column(&self) -> &str {
        match self {
            Opened::Csv(s) => &s.column_name,
            Opened::Sqlite(s) => &s.column_name,
        }
    }

    /// Streams every record to `tx` in batches.
    pub(crate) async fn stream(self, tx: mpsc::Sender<Vec<Record>>) -> Result<(), SourceError> {
        match self {
            Opened::Csv(s) => tokio::task::spawn_blocking(move || s.stream(&tx))
                .await
                .map_err(|e| SourceError::Unusable(format!("the CSV reader stopped: {e}")))?,
            Opened::Sqlite(s) => s.stream(&tx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_the_key_column() {
        assert_eq!(
            pick_column(&cols(&["id", "Name", "Phone Number"]), None),
            Ok(2)
        );
        assert_eq!(pick_column(&cols(&["id", "chat_id", "phone"]), None), Ok(1));
        assert_eq!(pick_column(&cols(&["id", "chatId"]), None), Ok(1));
        assert_eq!(pick_column(&cols(&["a", "b"]), None), Ok(0));
        assert_eq!(pick_column(&cols(&["a", "Mobile"]), Some("mobile")), Ok(1));
        let err = pick_column(&cols(&["a", "b"]), Some("phone"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a', 'b'"), "{err}");
    }
}
