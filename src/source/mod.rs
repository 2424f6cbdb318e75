//! Input sources: a CSV file, a workbook, or a table in SQLite, PostgreSQL or MySQL, read as a
//! stream of raw values with their line (or row) numbers. Nothing here normalises; unreadable
//! rows are reported, not fatal.

pub(crate) mod csv_file;
mod server_table;
pub(crate) mod server_url;
pub(crate) mod sniff;
mod sqlite_table;
pub(crate) mod workbook;

use std::path::PathBuf;

use encoding_rs::Encoding;

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
        /// The column holding each row's own id (default: the data row number).
        id_column: Option<String>,
        /// How the file is written (found from its first bytes when not given).
        options: CsvOptions,
    },
    /// A sheet of a workbook (.xlsx, .xlsm, .xls, .ods).
    Workbook {
        /// The file.
        path: PathBuf,
        /// The sheet (default: the first).
        sheet: Option<String>,
        /// The key column (found by name when not given).
        column: Option<String>,
        /// The column holding each row's own id (default: the data row number).
        id_column: Option<String>,
    },
    /// A table in a SQLite database.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The key column (found by name when not given).
        column: Option<String>,
        /// The column holding each row's own id (default: the primary key, else the rowid).
        id_column: Option<String>,
    },
    /// A table in a PostgreSQL or MySQL/MariaDB database.
    Server {
        /// The database's URL (its password is masked when shown).
        url: server_url::ServerUrl,
        /// The table, `[schema.]table`.
        table: String,
        /// The key column (found by name when not given).
        column: Option<String>,
        /// The column holding each row's own id, unique (default: the single-column primary key).
        id_column: Option<String>,
    },
}

/// How a CSV file is written; `None` means found from the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// The field delimiter.
    pub delimiter: Option<u8>,
    /// The text encoding.
    pub encoding: Option<&'static Encoding>,
}

impl Source {
    /// A short description for messages and the run ledger.
    pub fn describe(&self) -> String {
        match self {
            Source::Csv { path, .. } => path.display().to_string(),
            Source::Workbook { path, sheet, .. } => match sheet {
                Some(sheet) => format!("{} sheet {sheet}", path.display()),
                None => path.display().to_string(),
            },
            Source::Sqlite { path, table, .. } => {
                format!("sqlite:{} table {table}", path.display())
            }
            Source::Server { url, table, .. } => format!("{url} table {table}"),
        }
    }

    /// Whether rows' own ids come from the data (an id column, a primary key), which may repeat
    /// or be empty; a row number never does.
    pub fn ids_from_data(&self) -> bool {
        match self {
            Source::Csv { id_column, .. } | Source::Workbook { id_column, .. } => {
                id_column.is_some()
            }
            Source::Sqlite { .. } | Source::Server { .. } => true,
        }
    }

    /// The name rows of this source are linked under when `--source-name` is not given: the
    /// file name of a CSV or workbook, the table name of a database table.
    pub fn default_name(&self) -> String {
        match self {
            Source::Csv { path, .. } | Source::Workbook { path, .. } => {
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            }
            Source::Sqlite { table, .. } | Source::Server { table, .. } => table.clone(),
        }
    }
}

/// One input row: `row_ref` is the row's own id, `line` where it stands (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Value {
        line: u64,
        row_ref: String,
        value: String,
    },
    Unreadable {
        line: u64,
        row_ref: String,
        message: String,
    },
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

/// Words in a header that name a phone number (lower case, letters and digits only), in the
/// languages of GREEN-API's users: English, Russian, Kazakh, Portuguese, Spanish.
const PHONE_WORDS: [&str; 11] = [
    "phone",
    "mobile",
    "телефон",
    "мобильн",
    "сотов",
    "ұялы",
    "celular",
    "telefone",
    "teléfono",
    "telefono",
    "móvil",
];

/// Short header names that are a phone number only when they are the whole name.
const SHORT_PHONE_NAMES: [&str; 8] = [
    "tel",
    "тел",
    "msisdn",
    "номер",
    "нөмір",
    "movil",
    "cel",
    "fone",
];

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
        let folded = wanted.trim().to_lowercase();
        return headers
            .iter()
            .position(|h| h == wanted)
            .or_else(|| {
                headers
                    .iter()
                    .position(|h| h.trim().to_lowercase() == folded)
            })
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
    let named = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&simple(h).as_str()))
    };
    let containing = |parts: &[&str]| {
        headers
            .iter()
            .position(|h| parts.iter().any(|p| simple(h).contains(p)))
    };
    let found = named(&[
        "chatid",
        "chat",
        "whatsapp",
        "ватсап",
        "вотсап",
        "telegram",
        "телеграм",
        "username",
    ])
    .or_else(|| containing(&PHONE_WORDS))
    .or_else(|| named(&SHORT_PHONE_NAMES));
    Ok(found.unwrap_or(0))
}

/// The key column and the id column of a file's `headers`, as [`pick_column`] finds them.
fn pick_columns(
    headers: &[String],
    shown: &std::path::Path,
    wanted: Option<&str>,
    id_column: Option<&str>,
) -> Result<(usize, Option<usize>), SourceError> {
    let pick = |wanted| {
        pick_column(headers, wanted)
            .map_err(|e| SourceError::Unusable(format!("{}: {e}", shown.display())))
    };
    Ok((
        pick(wanted)?,
        id_column.map(|id| pick(Some(id))).transpose()?,
    ))
}

/// A database row as a record: its id (NULL: empty, see the stage's row ids) and its value (NULL
/// reads as an empty value; a value that cannot be read as text is reported by row).
fn table_record<E>(line: u64, row_ref: Option<String>, value: Result<Option<String>, E>) -> Record {
    let row_ref = row_ref.unwrap_or_default();
    match value {
        Ok(value) => Record::Value {
            line,
            row_ref,
            value: value.unwrap_or_default(),
        },
        Err(_) => Record::Unreadable {
            line,
            row_ref,
            message: "the value is not valid UTF-8 text".into(),
        },
    }
}

/// A file row's own id: its `id_column` cell, else its data row number.
fn file_row_ref(number: u64, fields: &[String], id_column: Option<usize>) -> String {
    id_column
        .and_then(|i| fields.get(i))
        .map_or_else(|| number.to_string(), |id| id.trim().to_string())
}

/// Sends `records` to `tx` in batches of [`BATCH`] (from a blocking thread), until the first
/// error or until the receiver is gone.
fn send_in_batches(
    records: impl Iterator<Item = Result<Record, SourceError>>,
    tx: &mpsc::Sender<Vec<Record>>,
) -> Result<(), SourceError> {
    let mut batch = Vec::with_capacity(BATCH);
    for record in records {
        batch.push(record?);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// Opens and checks the source (file, table, column) without reading its rows, so a bad input
/// is reported before any call is made.
pub(crate) async fn open(source: &Source) -> Result<Opened, SourceError> {
    match source {
        Source::Csv {
            path,
            column,
            id_column,
            options,
        } => {
            csv_file::open(path, column.as_deref(), id_column.as_deref(), options).map(Opened::Csv)
        }
        Source::Workbook {
            path,
            sheet,
            column,
            id_column,
        } => {
            // A sheet is read whole when the workbook opens: on a blocking thread, not the
            // runtime's.
            let (path, sheet, column, id_column) = (
                path.clone(),
                sheet.clone(),
                column.clone(),
                id_column.clone(),
            );
            tokio::task::spawn_blocking(move || {
                workbook::open(
                    &path,
                    sheet.as_deref(),
                    column.as_deref(),
                    id_column.as_deref(),
                )
            })
            .await
            .map_err(|e| SourceError::Unusable(format!("reading the workbook failed: {e}")))?
            .map(Opened::Workbook)
        }
        Source::Sqlite {
            path,
            table,
            column,
            id_column,
        } => sqlite_table::open(path, table, column.as_deref(), id_column.as_deref())
            .await
            .map(Opened::Sqlite),
        Source::Server {
            url,
            table,
            column,
            id_column,
        } => server_table::open(url, table, column.as_deref(), id_column.as_deref())
            .await
            .map(Opened::Server),
    }
}

/// A source that was opened and checked, ready to stream.
pub(crate) enum Opened {
    Csv(csv_file::CsvSource),
    Workbook(workbook::WorkbookSource),
    Sqlite(sqlite_table::SqliteSource),
    Server(server_table::ServerTable),
}

impl Opened {
    /// The name of the column read.
    pub(crate) fn column(&self) -> &str {
        match self {
            Opened::Csv(s) => &s.column_name,
            Opened::Workbook(s) => &s.column_name,
            Opened::Sqlite(s) => &s.column_name,
            Opened::Server(s) => &s.column_name,
        }
    }

    /// Every column of the input.
    pub(crate) fn columns(&self) -> &[String] {
        match self {
            Opened::Csv(s) => s.columns(),
            Opened::Workbook(s) => s.columns(),
            Opened::Sqlite(s) => &s.columns,
            Opened::Server(s) => &s.columns,
        }
    }

    /// How a file was read (`, delimiter ';', encoding windows-1251`); empty for a table.
    pub(crate) fn format(&self) -> String {
        match self {
            Opened::Csv(s) => s.format(),
            Opened::Workbook(_) | Opened::Sqlite(_) | Opened::Server(_) => String::new(),
        }
    }

    /// Streams every record to `tx` in batches.
    pub(crate) async fn stream(self, tx: mpsc::Sender<Vec<Record>>) -> Result<(), SourceError> {
        match self {
            Opened::Csv(s) => tokio::task::spawn_blocking(move || s.stream(&tx))
                .await
                .map_err(|e| SourceError::Unusable(format!("the CSV reader stopped: {e}")))?,
            Opened::Workbook(s) => tokio::task::spawn_blocking(move || s.stream(&tx))
                .await
                .map_err(|e| SourceError::Unusable(format!("the workbook reader stopped: {e}")))?,
            Opened::Sqlite(s) => s.stream(&tx).await,
            Opened::Server(s) => s.stream(&tx).await,
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
        assert_eq!(
            pick_column(&cols(&["Имя", "ТЕЛЕФОН"]), Some("телефон")),
            Ok(1)
        );
        for header in [
            "Телефон",
            "Номер телефона",
            "Мобильный",
            "тел.",
            "Ұялы телефон",
            "Celular",
            "Telefone",
            "Teléfono",
            "Móvil",
            "WhatsApp",
            "Chat ID",
        ] {
            assert_eq!(
                pick_column(&cols(&["id", "Имя / Nome", header]), None),
                Ok(2),
                "{header}"
            );
        }
        let err = pick_column(&cols(&["a", "b"]), Some("phone"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a', 'b'"), "{err}");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Bytes shaped like CSV exports: separators, quotes, line ends, BOMs, Cyrillic, noise.
        fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2048),
                "(\u{feff})?([a-zA-Zа-я\"]{0,6}[,;\t|]){0,5}(\r?\n[0-9 +()\";,-]{0,30}){0,20}"
                    .prop_map(String::into_bytes),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Any file: read to the end with a guess of its shape, or refused with a message;
            /// never a panic.
            #[test]
            fn any_file_is_read_or_refused_with_a_message(bytes in csv_bytes()) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("in.csv");
                std::fs::write(&path, &bytes).unwrap();
                let source = Source::Csv {
                    path,
                    column: None,
                    id_column: None,
                    options: CsvOptions::default(),
                };
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let read: Result<usize, SourceError> = runtime.block_on(async {
                    let opened = open(&source).await?;
                    let (tx, mut rx) = mpsc::channel(4);
                    let reading = tokio::spawn(opened.stream(tx));
                    let mut rows = 0;
                    while let Some(batch) = rx.recv().await {
                        rows += batch.len();
                    }
                    reading.await.unwrap()?;
                    Ok(rows)
                });
                if let Err(e) = read {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}
