//! Streams one column of a table in a PostgreSQL or MySQL/MariaDB database (the CRM's own), page
//! by page in the order of the row id (keyset pagination: `WHERE id > last ORDER BY id LIMIT n`),
//! so neither side holds more than a page. Schema, table and column names are checked against
//! the catalog and quoted; they are never spliced into SQL as given.

use sqlx::any::{AnyConnectOptions, AnyRow};
use sqlx::{AnyConnection, ConnectOptions, Connection, Row};
use tokio::sync::mpsc;

use super::server_url::{Engine, ServerUrl};
use super::{pick_column, table_record, Record, SourceError, BATCH};

/// What greenrich asks of one engine: its catalog and its SQL spelling.
struct Dialect {
    engine: Engine,
    /// The schema (MySQL: the database) a table name without one is looked up in.
    current_schema: &'static str,
    /// Tables and views of schema ?1.
    tables: &'static str,
    /// Columns of table ?2 in schema ?1, in order: name, type.
    columns: &'static str,
    /// Columns of table ?2 in schema ?1 that alone make a unique key (primary key first).
    unique_columns: &'static str,
}

const POSTGRES: Dialect = Dialect {
    engine: Engine::Postgres,
    current_schema: "SELECT current_schema()::text",
    tables: "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = $1 ORDER BY 1",
    // format_type spells a type as a cast accepts it (information_schema says "USER-DEFINED").
    columns: "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
              WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass
                AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    unique_columns: "SELECT a.attname::text FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                     WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass
                       AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
                     ORDER BY i.indisprimary DESC, 1",
};

const MYSQL: Dialect = Dialect {
    engine: Engine::Mysql,
    current_schema: "SELECT CAST(DATABASE() AS CHAR)",
    tables: "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
             WHERE TABLE_SCHEMA = ? ORDER BY 1",
    columns: "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR)
              FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    unique_columns: "SELECT CAST(MIN(COLUMN_NAME) AS CHAR) FROM information_schema.STATISTICS
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
                     GROUP BY INDEX_NAME HAVING COUNT(*) = 1
                     ORDER BY MAX(INDEX_NAME = 'PRIMARY') DESC, 1",
};

impl Dialect {
    fn of(engine: Engine) -> &'static Dialect {
        match engine {
            Engine::Postgres => &POSTGRES,
            Engine::Mysql => &MYSQL,
        }
    }

    /// `name` as a quoted identifier.
    fn quote(&self, name: &str) -> String {
        match self.engine {
            Engine::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
            Engine::Mysql => format!("`{}`", name.replace('`', "``")),
        }
    }

    /// `expr` as text.
    fn text(&self, expr: &str) -> String {
        match self.engine {
            Engine::Postgres => format!("CAST({expr} AS text)"),
            Engine::Mysql => format!("CAST({expr} AS CHAR)"),
        }
    }

    /// The first page's query and the next pages' (the last id read bound as text, cast back to
    /// the id column's type so the comparison is the one `ORDER BY` uses).
    fn page_queries(&self, shape: &TableShape) -> (String, String) {
        let table = format!("{}.{}", self.quote(&shape.schema), self.quote(&shape.table));
        // Qualified: PostgreSQL names `CAST(id AS text)` "id", and a bare `ORDER BY id` would
        // sort by that text.
        let id = format!("{table}.{}", self.quote(&shape.id_column));
        let select = format!(
            "SELECT {} AS row_ref, {} AS value FROM {table}",
            self.text(&id),
            self.text(&format!("{table}.{}", self.quote(&shape.column))),
        );
        let bound = match (self.engine, shape.id_is_integer) {
            // The catalog's type names are spelled by the server itself.
            (Engine::Postgres, _) => format!("CAST($1 AS {})", shape.id_type),
            // A string compared with an integer column would be compared as a double.
            (Engine::Mysql, true) => "CAST(? AS DECIMAL(65, 0))".to_string(),
            (Engine::Mysql, false) => "?".to_string(),
        };
        (
            format!("{select} ORDER BY {id} LIMIT {BATCH}"),
            format!("{select} WHERE {id} > {bound} ORDER BY {id} LIMIT {BATCH}"),
        )
    }
}

/// The table, the column read and the id column, as the catalog spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableShape {
    schema: String,
    table: String,
    column: String,
    id_column: String,
    id_type: String,
    id_is_integer: bool,
}

/// A table of a database server, checked and ready to stream.
pub(crate) struct ServerTable {
    conn: AnyConnection,
    first_page: String,
    next_page: String,
    source_name: String,
    pub(crate) column_name: String,
    pub(crate) columns: Vec<String>,
}

/// Connects to `url` and checks `table` (`[schema.]table`), its column and its id column.
pub(crate) async fn open(
    url: &ServerUrl,
    table: &str,
    wanted: Option<&str>,
    id_column: Option<&str>,
) -> Result<ServerTable, SourceError> {
    let unusable = |m: String| SourceError::Unusable(m);
    let dialect = Dialect::of(url.engine);
    let mut conn = connect(url).await?;
    let (schema, table_name) = schema_and_table(&mut conn, dialect, url, table).await?;
    let catalog_error = |e: sqlx::Error| unusable(format!("cannot read the catalog of {url}: {e}"));
    let tables: Vec<String> = sqlx::query_scalar(dialect.tables)
        .bind(&schema)
        .fetch_all(&mut conn)
        .await
        .map_err(catalog_error)?;
    if !tables.contains(&table_name) {
        return Err(unusable(format!(
            "{url} has no table '{table_name}' in schema '{schema}'; its tables there are: {}",
            listed(&tables)
        )));
    }
    let columns: Vec<(String, String)> = sqlx::query_as(dialect.columns)
        .bind(&schema)
        .bind(&table_name)
        .fetch_all(&mut conn)
        .await
        .map_err(catalog_error)?;
    let unique: Vec<String> = sqlx::query_scalar(dialect.unique_columns)
        .bind(&schema)
        .bind(&table_name)
        .fetch_all(&mut conn)
        .await
        .map_err(catalog_error)?;
    let shape = table_shape(schema, table_name, &columns, &unique, wanted, id_column)
        .map_err(|e| unusable(format!("{url}: {e}")))?;
    let (first_page, next_page) = dialect.page_queries(&shape);
    Ok(ServerTable {
        conn,
        first_page,
        next_page,
        source_name: format!("{url} table {}.{}", shape.schema, shape.table),
        column_name: shape.column,
        columns: columns.into_iter().map(|(name, _)| name).collect(),
    })
}

/// A connection to the input's database.
async fn connect(url: &ServerUrl) -> Result<AnyConnection, SourceError> {
    let unusable = |m: String| SourceError::Unusable(m);
    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url
        .expose()
        .parse()
        .map_err(|e| unusable(format!("the input URL {url} is not usable: {e}")))?;
    options
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| unusable(format!("cannot connect to the input database {url}: {e}")))
}

/// `--table` as (schema, table): a bare table name is in the connection's current schema.
async fn schema_and_table(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    url: &ServerUrl,
    table: &str,
) -> Result<(String, String), SourceError> {
    if let Some((schema, table)) = table.split_once('.') {
        return Ok((schema.to_string(), table.to_string()));
    }
    let current: Option<String> = sqlx::query_scalar(dialect.current_schema)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| SourceError::Unusable(format!("cannot read the catalog of {url}: {e}")))?;
    let current = current.ok_or_else(|| {
        SourceError::Unusable(format!(
            "the input URL {url} names no database: add /DATABASE to it, or give --table DATABASE.TABLE"
        ))
    })?;
    Ok((current, table.to_string()))
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// Picks the column read and the id column from the catalog's `columns` (name, type) and its
/// single-column `unique` keys (primary key first). The id must be unique: pages are cut by it.
fn table_shape(
    schema: String,
    table: String,
    columns: &[(String, String)],
    unique: &[String],
    wanted: Option<&str>,
    id_column: Option<&str>,
) -> Result<TableShape, String> {
    let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
    let pick = |wanted| {
        pick_column(&names, wanted)
            .map(|i| columns[i].clone())
            .map_err(|e| format!("table '{schema}.{table}': {e}"))
    };
    let (column, _) = pick(wanted)?;
    let (id_name, id_type) = match id_column {
        Some(id) => {
            let (name, id_type) = pick(Some(id))?;
            if !unique.contains(&name) {
                return Err(format!(
                    "table '{schema}.{table}': the id column '{name}' is not unique (no primary key or unique index on it alone); name one that is{}",
                    unique_hint(unique)
                ));
            }
            (name, id_type)
        }
        None => match unique.first() {
            Some(key) => pick(Some(key))?,
            None => {
                return Err(format!(
                    "table '{schema}.{table}' has no single-column primary key or unique index; give --id-column naming a unique column of: {}",
                    listed(&names)
                ))
            }
        },
    };
    let id_is_integer = matches!(
        id_type.to_ascii_lowercase().as_str(),
        "smallint" | "integer" | "bigint" | "tinyint" | "mediumint" | "int"
    );
    Ok(TableShape {
        schema,
        table,
        column,
        id_column: id_name,
        id_type,
        id_is_integer,
    })
}

fn unique_hint(unique: &[String]) -> String {
    if unique.is_empty() {
        String::new()
    } else {
        format!(" (unique: {})", unique.join(", "))
    }
}

impl ServerTable {
    /// Sends every row to `tx`, a page at a time.
    pub(crate) async fn stream(
        mut self,
        tx: &mpsc::Sender<Vec<Record>>,
    ) -> Result<(), SourceError> {
        let mut line = 0;
        let mut last_id: Option<String> = None;
        loop {
            let query = match &last_id {
                None => sqlx::query(&self.first_page),
                Some(id) => sqlx::query(&self.next_page).bind(id.clone()),
            };
            let rows: Vec<AnyRow> =
                query
                    .fetch_all(&mut self.conn)
                    .await
                    .map_err(|e| SourceError::Broken {
                        source_name: self.source_name.clone(),
                        line,
                        message: e.to_string(),
                    })?;
            let Some(last) = rows.last() else {
                break;
            };
            last_id = text_cell(last, 0).ok().flatten();
            let full_page = rows.len() == BATCH;
            let batch: Vec<Record> = rows
                .iter()
                .map(|row| {
                    line += 1;
                    table_record(line, text_cell(row, 0).ok().flatten(), text_cell(row, 1))
                })
                .collect();
            if tx.send(batch).await.is_err() || !full_page || last_id.is_none() {
                break;
            }
        }
        let _ = self.conn.close().await;
        Ok(())
    }
}

/// A cell as text. MySQL hands `TEXT` columns, and a `CAST(… AS CHAR)` of them, over as bytes
/// (WooCommerce keeps phones in `LONGTEXT` meta values): those are read as UTF-8.
fn text_cell(row: &AnyRow, i: usize) -> Result<Option<String>, ()> {
    match row.try_get::<Option<String>, _>(i) {
        Ok(text) => Ok(text),
        Err(_) => match row.try_get::<Option<Vec<u8>>, _>(i) {
            Ok(bytes) => bytes.map(String::from_utf8).transpose().map_err(|_| ()),
            Err(_) => Err(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[(&str, &str)]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    fn shape(
        cols: &[(&str, &str)],
        unique: &[&str],
        wanted: Option<&str>,
        id: Option<&str>,
    ) -> Result<TableShape, String> {
        let unique: Vec<String> = unique.iter().map(|s| s.to_string()).collect();
        table_shape(
            "crm".into(),
            "customers".into(),
            &columns(cols),
            &unique,
            wanted,
            id,
        )
    }

    #[test]
    fn the_id_is_the_primary_key_unless_named() {
        let cols = [("id", "bigint"), ("code", "text"), ("Phone", "text")];
        let found = shape(&cols, &["id", "code"], None, None).unwrap();
        assert_eq!(
            (found.column.as_str(), found.id_column.as_str()),
            ("Phone", "id")
        );
        assert!(found.id_is_integer);
        let named = shape(&cols, &["id", "code"], Some("phone"), Some("CODE")).unwrap();
        assert_eq!(named.id_column, "code");
        assert!(!named.id_is_integer);
    }

    #[test]
    fn an_id_that_is_not_unique_is_refused_with_the_alternatives() {
        let cols = [("id", "bigint"), ("owner", "int"), ("phone", "text")];
        let err = shape(&cols, &["id"], None, Some("owner")).unwrap_err();
        assert!(err.contains("'owner' is not unique"), "{err}");
        assert!(err.contains("(unique: id)"), "{err}");
        let err = shape(&cols, &[], None, None).unwrap_err();
        assert!(err.contains("--id-column"), "{err}");
        assert!(err.contains("id, owner, phone"), "{err}");
        let err = shape(&cols, &["id"], Some("mobile"), None).unwrap_err();
        assert!(err.contains("no column 'mobile'"), "{err}");
    }

    #[test]
    fn names_are_quoted_for_each_engine() {
        assert_eq!(POSTGRES.quote("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(MYSQL.quote("we`ird"), "`we``ird`");
        let shape = shape(&[("id", "uuid"), ("tel", "text")], &["id"], None, None).unwrap();
        let (first, next) = POSTGRES.page_queries(&shape);
        let id = "\"crm\".\"customers\".\"id\"";
        assert_eq!(
            first,
            format!("SELECT CAST({id} AS text) AS row_ref, CAST(\"crm\".\"customers\".\"tel\" AS text) AS value FROM \"crm\".\"customers\" ORDER BY {id} LIMIT {BATCH}")
        );
        assert!(
            next.contains(&format!("WHERE {id} > CAST($1 AS uuid) ORDER BY {id}")),
            "{next}"
        );
        let (_, next) = MYSQL.page_queries(&TableShape {
            id_is_integer: true,
            ..shape
        });
        assert!(
            next.contains("WHERE `crm`.`customers`.`id` > CAST(? AS DECIMAL(65, 0))"),
            "{next}"
        );
    }
}
