//! Exports the store's tables to CSV files with the same columns, neutralising cells that a
//! spreadsheet would run as formulas (names come from strangers).

use std::path::Path;

use futures::TryStreamExt;
use sqlx::Row;

use crate::store::{Store, StoreError};

/// The tables exported, each to `<table>.csv`, with the order of their rows.
const TABLES: [(&str, &str); 3] = [
    ("contacts", "chat_id"),
    ("products", "chat_id, position"),
    ("failures", "key"),
];

/// Prefixes a cell that starts like a formula with `'`, unless it is a plain number.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.trim().parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Writes `contacts.csv`, `products.csv` and `failures.csv` into `dir`; returns rows per file.
pub async fn export_csv(
    store: &Store,
    dir: &Path,
    raw: bool,
) -> Result<Vec<(String, u64)>, ExportError> {
    let mut conn = store.connect().await?;
    let mut written = Vec::new();
    for (table, order) in TABLES {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(table)
                .fetch_all(&mut conn)
                .await
                .map_err(StoreError::from)?;
        let select = columns
            .iter()
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(", ");
        let path = dir.join(format!("{table}.csv"));
        let file_error =
            |e: std::io::Error| ExportError::File(path.display().to_string(), e.to_string());
        let mut out = csv::Writer::from_path(&path).map_err(|e| file_error(e.into()))?;
        out.write_record(&columns)
            .map_err(|e| file_error(e.into()))?;
        let sql = format!("SELECT {select} FROM {table} ORDER BY {order}");
        let mut rows = sqlx::query(&sql).fetch(&mut conn);
        let mut count = 0;
        let mut record = Vec::with_capacity(columns.len());
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            record.clear();
            for i in 0..columns.len() {
                let cell: Option<String> = row.try_get(i).map_err(StoreError::from)?;
                let cell = cell.unwrap_or_default();
                record.push(if raw {
                    cell
                } else {
                    neutralise(&cell).into_owned()
                });
            }
            out.write_record(&record)
                .map_err(|e| file_error(e.into()))?;
            count += 1;
        }
        out.flush().map_err(file_error)?;
        written.push((format!("{table}.csv"), count));
    }
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {0}: {1}")]
    File(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
