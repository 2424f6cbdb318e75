//! Streams one column of a table in a SQLite database (such as the CRM's own). Table and column
//! names are checked against the schema and quoted; they are never spliced into SQL as given.

use std::path::Path;

use futures::TryStreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row, SqliteConnection};
use tokio::sync::mpsc;

use super::{pick_column, table_record, Record, SourceError, BATCH};

pub(crate) struct SqliteSource {
    conn: SqliteConnection,
    query: String,
    source_name: String,
    pub(crate) column_name: String,
    pub(crate) columns: Vec<String>,
}

/// `name` as a quoted SQLite identifier.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) async fn open(
    path: &Path,
    table: &str,
    wanted: Option<&str>,
    id_column: Option<&str>,
) -> Result<SqliteSource, SourceError> {
    let shown = path.display().to_string();
    let unusable = |m: String| SourceError::Unusable(m);
    let mut conn = connect(path, &shown).await?;
    let table = find_table(&mut conn, table, &shown).await?;
    let columns: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid")
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| {
                unusable(format!(
                    "cannot read the columns of '{table}' in {shown}: {e}"
                ))
            })?;
    let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
    let pick = |wanted| {
        pick_column(&names, wanted)
            .map_err(|e| unusable(format!("table '{table}' in {shown}: {e}")))
    };
    let column_name = names[pick(wanted)?].clone();
    // The row's own id: --id-column, else a single-column primary key, else the rowid.
    let primary_key: Vec<&String> = columns
        .iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(name, _)| name)
        .collect();
    let id = match (id_column, primary_key.as_slice()) {
        (Some(id), _) => quote_identifier(&names[pick(Some(id))?]),
        (None, [single]) => quote_identifier(single),
        (None, _) => "rowid".to_string(),
    };
    let query = format!(
        "SELECT CAST({id} AS TEXT), CAST({} AS TEXT) FROM {} ORDER BY rowid",
        quote_identifier(&column_name),
        quote_identifier(&table)
    );
    Ok(SqliteSource {
        conn,
        query,
        source_name: format!("{shown} table {table}"),
        column_name,
        columns: names,
    })
}

/// A read-only connection to the SQLite database at `path` (`shown` in messages).
async fn connect(path: &Path, shown: &str) -> Result<SqliteConnection, SourceError> {
    if !path.is_file() {
        return Err(SourceError::Unusable(format!(
            "the input database {shown} does not exist"
        )));
    }
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| SourceError::Unusable(format!("cannot open the input database {shown}: {e}")))
}

/// The table (or view) named `table`, or a message that lists the ones there are.
async fn find_table(
    conn: &mut SqliteConnection,
    table: &str,
    shown: &str,
) -> Result<String, SourceError> {
    let unusable = |m: String| SourceError::Unusable(m);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| unusable(format!("{shown} is not a SQLite database ({e})")))?;
    if let Some(found) = tables.iter().find(|t| t.as_str() == table) {
        return Ok(found.clone());
    }
    let listed = match tables.is_empty() {
        true => "(none)".to_string(),
        false => tables.join(", "),
    };
    Err(unusable(format!(
        "the input database {shown} has no table '{table}'; its tables are: {listed}"
    )))
}

impl SqliteSource {
    pub(crate) async fn stream(
        mut self,
        tx: &mpsc::Sender<Vec<Record>>,
    ) -> Result<(), SourceError> {
        let mut rows = sqlx::query(&self.query).fetch(&mut self.conn);
        let mut batch = Vec::with_capacity(BATCH);
        let mut line = 0;
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    return Err(SourceError::Broken {
                        source_name: self.source_name.clone(),
                        line,
                        message: e.to_string(),
                    })
                }
            };
            line += 1;
            batch.push(table_record(
                line,
                row.try_get(0).ok().flatten(),
                row.try_get(1),
            ));
            if batch.len() == BATCH && tx.send(std::mem::take(&mut batch)).await.is_err() {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("phone"), "\"phone\"");
        assert_eq!(
            quote_identifier("a\"b; DROP TABLE x"),
            "\"a\"\"b; DROP TABLE x\""
        );
    }
}
