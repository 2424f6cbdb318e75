//! Streams one column of a CSV file: UTF-8 with or without BOM, CRLF or LF, quoted fields.
//! A row with the wrong number of fields or invalid UTF-8 is reported by line and skipped.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::{pick_column, Record, SourceError, BATCH};

pub(crate) struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    column: usize,
    pub(crate) column_name: String,
}

pub(crate) fn open(path: &Path, wanted: Option<&str>) -> Result<CsvSource, SourceError> {
    let shown = path.display();
    let file = File::open(path)
        .map_err(|e| SourceError::Unusable(format!("cannot open the input file {shown}: {e}")))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(SourceError::Unusable(format!(
            "the input {shown} is a directory, not a CSV file"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::with_capacity(256 * 1024, file));
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| SourceError::Unusable(format!("cannot read the header row of {shown}: {e}")))?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(SourceError::Unusable(format!(
            "the input file {shown} is empty: it needs a header row and one row per contact"
        )));
    }
    let column = pick_column(&headers, wanted)
        .map_err(|e| SourceError::Unusable(format!("{shown}: {e}")))?;
    Ok(CsvSource {
        path: path.to_path_buf(),
        reader,
        column_name: headers[column].clone(),
        column,
    })
}

impl CsvSource {
    pub(crate) fn stream(mut self, tx: &mpsc::Sender<Vec<Record>>) -> Result<(), SourceError> {
        let mut record = csv::ByteRecord::new();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let item = match self.reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    match std::str::from_utf8(record.get(self.column).unwrap_or_default()) {
                        Ok(value) => Record::Value {
                            line,
                            value: value.to_string(),
                        },
                        Err(_) => Record::Unreadable {
                            line,
                            message: "the value is not valid UTF-8 (save the file as UTF-8)".into(),
                        },
                    }
                }
                Err(e) => match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        pos,
                        expected_len,
                        len,
                    } => Record::Unreadable {
                        line: pos.as_ref().map_or(0, |p| p.line()),
                        message: format!("the row has {len} fields, the header has {expected_len}"),
                    },
                    _ => {
                        return Err(SourceError::Broken {
                            source_name: self.path.display().to_string(),
                            line: e.position().map_or(0, |p| p.line()),
                            message: e.to_string(),
                        })
                    }
                },
            };
            batch.push(item);
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
}
