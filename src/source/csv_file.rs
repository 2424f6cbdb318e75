//! Reads CSV files as people have them: UTF-8 with or without BOM, UTF-16 with BOM, Windows-1251;
//! `,` `;` tab or `|`; CRLF or LF; quoted fields. A row with the wrong number of fields or bytes
//! that are not text is reported by line and skipped.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use encoding_rs::{Encoding, UTF_8};
use tokio::sync::mpsc;

use super::{file_row_ref, pick_columns, send_in_batches, CsvOptions, Record, SourceError};
use crate::source::sniff;

/// A CSV file opened and checked: its header, and how it is written.
pub(crate) struct CsvFile {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read + Send>>,
    /// The header row, decoded.
    pub(crate) headers: Vec<String>,
    /// The field delimiter found or given.
    pub(crate) delimiter: u8,
    /// The encoding found or given.
    pub(crate) encoding: &'static Encoding,
}

/// Opens `path` and reads its header row, guessing the encoding and delimiter unless `options`
/// give them. A `flexible` file takes rows of any length (to copy them as they are).
pub(crate) fn open_file(
    path: &Path,
    options: &CsvOptions,
    flexible: bool,
) -> Result<CsvFile, SourceError> {
    let shown = path.display();
    let unusable = |m: String| SourceError::Unusable(m);
    let (file, sample) = open_with_sample(path)?;
    let encoding = options.encoding.unwrap_or_else(|| sniff::encoding(&sample));
    let delimiter = options.delimiter.unwrap_or_else(|| {
        let (text, _) = encoding.decode_with_bom_removal(&sample);
        sniff::delimiter(&text)
    });
    let raw = BufReader::with_capacity(256 * 1024, file);
    // UTF-8 is read as it is, so a row that is not valid text is reported by its line; any other
    // encoding is turned into UTF-8 on the way in.
    let decoded: Box<dyn Read + Send> = if encoding == UTF_8 {
        Box::new(raw)
    } else {
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                .bom_override(true)
                .build(raw),
        )
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(flexible)
        .delimiter(delimiter)
        .from_reader(decoded);
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| unusable(format!("cannot read the header row of {shown}: {e}")))?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(unusable(format!(
            "the input file {shown} is empty: it needs a header row and one row per contact"
        )));
    }
    Ok(CsvFile {
        path: path.to_path_buf(),
        reader,
        headers,
        delimiter,
        encoding,
    })
}

/// The file at `path`, rewound, and its first bytes (to find its encoding and delimiter).
fn open_with_sample(path: &Path) -> Result<(File, Vec<u8>), SourceError> {
    let shown = path.display();
    let unusable = |m: String| SourceError::Unusable(m);
    let mut file = File::open(path)
        .map_err(|e| unusable(format!("cannot open the input file {shown}: {e}")))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(unusable(format!(
            "the input {shown} is a directory, not a CSV file"
        )));
    }
    let mut sample = Vec::with_capacity(sniff::SAMPLE_BYTES);
    (&mut file)
        .take(sniff::SAMPLE_BYTES as u64)
        .read_to_end(&mut sample)
        .and_then(|_| file.rewind())
        .map_err(|e| unusable(format!("cannot read the input file {shown}: {e}")))?;
    Ok((file, sample))
}

/// One data row of a CSV file.
pub(crate) struct CsvRow {
    /// 1-based data row number.
    pub(crate) number: u64,
    /// The line it starts on.
    pub(crate) line: u64,
    /// Its fields, decoded.
    pub(crate) fields: Vec<String>,
}

/// A row that cannot be read; `fatal` when the file cannot be read on (an I/O error).
pub(crate) struct RowError {
    pub(crate) number: u64,
    pub(crate) line: u64,
    pub(crate) message: String,
    pub(crate) fatal: bool,
}

impl CsvFile {
    /// Every data row as it is, its bytes decoded leniently (for copying rows out); stops at
    /// the first error that keeps the file from being read on.
    pub(crate) fn raw_rows(self) -> impl Iterator<Item = Result<Vec<String>, SourceError>> {
        let source_name = self.path.display().to_string();
        let mut reader = self.reader;
        let mut record = csv::ByteRecord::new();
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match reader.read_byte_record(&mut record) {
                Ok(false) => None,
                Ok(true) => Some(Ok(record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect())),
                Err(e) => {
                    failed = true;
                    Some(Err(SourceError::Broken {
                        source_name: source_name.clone(),
                        line: e.position().map_or(0, |p| p.line()),
                        message: e.to_string(),
                    }))
                }
            }
        })
    }

    /// Every data row, in order.
    pub(crate) fn rows(self) -> impl Iterator<Item = Result<CsvRow, RowError>> {
        let expected = self.headers.len();
        let mut reader = self.reader;
        let mut record = csv::ByteRecord::new();
        let mut number = 0;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let read = reader.read_byte_record(&mut record);
            number += 1;
            match read {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let fields: Result<Vec<String>, _> = record
                        .iter()
                        .map(|f| std::str::from_utf8(f).map(str::to_string))
                        .collect();
                    Some(match fields {
                        Ok(fields) => Ok(CsvRow {
                            number,
                            line,
                            fields,
                        }),
                        Err(_) => Err(RowError {
                            number,
                            line,
                            message: "the value is not valid UTF-8 (save the file as UTF-8)".into(),
                            fatal: false,
                        }),
                    })
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let (message, fatal) = match e.kind() {
                        csv::ErrorKind::UnequalLengths { len, .. } => (
                            format!("the row has {len} fields, the header has {expected}"),
                            false,
                        ),
                        _ => (e.to_string(), true),
                    };
                    done = fatal;
                    Some(Err(RowError {
                        number,
                        line,
                        message,
                        fatal,
                    }))
                }
            }
        })
    }
}

/// One column of a CSV file, streamed as records.
pub(crate) struct CsvSource {
    file: CsvFile,
    column: usize,
    id_column: Option<usize>,
    pub(crate) column_name: String,
}

pub(crate) fn open(
    path: &Path,
    wanted: Option<&str>,
    id_column: Option<&str>,
    options: &CsvOptions,
) -> Result<CsvSource, SourceError> {
    let file = open_file(path, options, false)?;
    let (column, id_column) = pick_columns(&file.headers, path, wanted, id_column)?;
    Ok(CsvSource {
        column_name: file.headers[column].clone(),
        column,
        id_column,
        file,
    })
}

impl CsvSource {
    pub(crate) fn columns(&self) -> &[String] {
        &self.file.headers
    }

    pub(crate) fn format(&self) -> String {
        format!(
            ", delimiter '{}', encoding {}",
            describe_delimiter(self.file.delimiter),
            self.file.encoding.name().to_lowercase()
        )
    }

    pub(crate) fn stream(self, tx: &mpsc::Sender<Vec<Record>>) -> Result<(), SourceError> {
        let (column, id_column) = (self.column, self.id_column);
        let source_name = self.file.path.display().to_string();
        let records = self.file.rows().map(move |row| match row {
            Ok(mut row) => Ok(Record::Value {
                line: row.line,
                row_ref: file_row_ref(row.number, &row.fields, id_column),
                value: std::mem::take(&mut row.fields[column]),
            }),
            Err(e) if e.fatal => Err(SourceError::Broken {
                source_name: source_name.clone(),
                line: e.line,
                message: e.message,
            }),
            Err(e) => Ok(Record::Unreadable {
                line: e.line,
                row_ref: e.number.to_string(),
                message: e.message,
            }),
        });
        send_in_batches(records, tx)
    }
}

/// A delimiter as people name it.
pub(crate) fn describe_delimiter(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".into(),
        other => char::from(other).to_string(),
    }
}
