//! Reads workbooks (.xlsx, .xlsm, .xls, .ods) through calamine: the first sheet or `--sheet`,
//! the header in the first non-empty row, phone numbers that Excel stored as numbers read as
//! their digits (never `7.9e10`), formulas as their cached values, empty rows skipped.

use std::path::Path;

use calamine::{Data, Range, Reader};
use tokio::sync::mpsc;

use super::{file_row_ref, pick_columns, send_in_batches, Record, SourceError};

/// File extensions read as workbooks.
const EXTENSIONS: [&str; 4] = ["xlsx", "xlsm", "xls", "ods"];

/// Whether `path` names a workbook (by its extension).
pub(crate) fn is_workbook(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// One sheet of a workbook, read whole (calamine reads a sheet at once).
pub(crate) struct Workbook {
    range: Range<Data>,
    header_row: usize,
    /// The header row.
    pub(crate) headers: Vec<String>,
}

/// Opens the sheet `sheet` (default: the first) of the workbook at `path`.
pub(crate) fn open_workbook(path: &Path, sheet: Option<&str>) -> Result<Workbook, SourceError> {
    let shown = path.display();
    let unusable = |m: String| SourceError::Unusable(m);
    let mut book = calamine::open_workbook_auto(path)
        .map_err(|e| unusable(format!("cannot open the workbook {shown}: {e}")))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(wanted) => names
            .iter()
            .find(|n| n.as_str() == wanted || n.to_lowercase() == wanted.to_lowercase())
            .cloned()
            .ok_or_else(|| {
                unusable(format!(
                    "the workbook {shown} has no sheet '{wanted}'; its sheets are: {}",
                    names.join(", ")
                ))
            })?,
        None => names
            .first()
            .cloned()
            .ok_or_else(|| unusable(format!("the workbook {shown} has no sheet")))?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| unusable(format!("cannot read sheet '{name}' of {shown}: {e}")))?;
    let header_row = range.rows().position(|row| !is_empty(row)).ok_or_else(|| {
        unusable(format!(
            "sheet '{name}' of {shown} is empty: it needs a header row and one row per contact"
        ))
    })?;
    let headers = range
        .rows()
        .nth(header_row)
        .map(|row| {
            row.iter()
                .map(|c| cell_text(c).trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(Workbook {
        range,
        header_row,
        headers,
    })
}

impl Workbook {
    /// The data rows after the header, as text, with their 1-based numbers (empty rows are
    /// skipped and not numbered).
    pub(crate) fn rows(&self) -> impl Iterator<Item = (u64, u64, Vec<String>)> + '_ {
        let first_line = self.range.start().map_or(0, |(row, _)| row as u64) + 1;
        self.range
            .rows()
            .enumerate()
            .skip(self.header_row + 1)
            .filter(|(_, row)| !is_empty(row))
            .zip(1..)
            .map(move |((index, row), number)| {
                let fields = row.iter().map(cell_text).collect();
                (number, first_line + index as u64, fields)
            })
    }
}

fn is_empty(row: &[Data]) -> bool {
    row.iter().all(|c| cell_text(c).trim().is_empty())
}

/// A cell as text: whole numbers as their digits, others as written.
pub(crate) fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{f:.0}"),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => (if *b { "TRUE" } else { "FALSE" }).to_string(),
        Data::DateTime(d) => d.to_string(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// One column of a workbook sheet, streamed as records.
pub(crate) struct WorkbookSource {
    book: Workbook,
    column: usize,
    id_column: Option<usize>,
    pub(crate) column_name: String,
}

pub(crate) fn open(
    path: &Path,
    sheet: Option<&str>,
    wanted: Option<&str>,
    id_column: Option<&str>,
) -> Result<WorkbookSource, SourceError> {
    let book = open_workbook(path, sheet)?;
    let (column, id_column) = pick_columns(&book.headers, path, wanted, id_column)?;
    Ok(WorkbookSource {
        column_name: book.headers[column].clone(),
        column,
        id_column,
        book,
    })
}

impl WorkbookSource {
    pub(crate) fn columns(&self) -> &[String] {
        &self.book.headers
    }

    pub(crate) fn stream(self, tx: &mpsc::Sender<Vec<Record>>) -> Result<(), SourceError> {
        let records = self.book.rows().map(|(number, line, mut fields)| {
            Ok(Record::Value {
                line,
                row_ref: file_row_ref(number, &fields, self.id_column),
                value: fields
                    .get_mut(self.column)
                    .map(std::mem::take)
                    .unwrap_or_default(),
            })
        });
        send_in_batches(records, tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_their_digits() {
        assert_eq!(cell_text(&Data::Float(79001234567.0)), "79001234567");
        assert_eq!(cell_text(&Data::Float(5215512345678.0)), "5215512345678");
        assert_eq!(cell_text(&Data::Int(79001234567)), "79001234567");
        assert_eq!(cell_text(&Data::Float(1.5)), "1.5");
        assert_eq!(cell_text(&Data::String("+7 900".into())), "+7 900");
        assert!(is_workbook(Path::new("list.XLSX")) && is_workbook(Path::new("a.ods")));
        assert!(!is_workbook(Path::new("list.csv")));
    }

    #[test]
    fn the_sample_workbook_reads_from_its_first_non_empty_row() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/customers.xlsx");
        let book = open_workbook(&path, None).unwrap();
        assert_eq!(book.headers, ["Имя", "Телефон", "Город"]);
        let phones: Vec<String> = book.rows().map(|(_, _, f)| f[1].clone()).collect();
        assert_eq!(
            phones,
            [
                "79001234567",
                "79001234568",
                "+7 (900) 123-45-69",
                "79001234570",
                "не указан"
            ]
        );
        assert!(open_workbook(&path, Some("Other")).is_err());
        assert!(open_workbook(&path, Some("клиенты")).is_ok());
    }
}
