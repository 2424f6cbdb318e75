//! Where a store lives, and opening one in PostgreSQL: a schema of greenrich's own (created when
//! missing, `greenrich` by default), which every connection of the store puts first on its
//! `search_path`, so the store's SQL names its tables without a schema. The CRM's own schemas are
//! never touched. Several processes may share a store (see [`super::shared`]). The statements
//! whose PostgreSQL text differs from SQLite's are here too.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use super::dialect::{runs_not_over, Dialect};
use super::{refuse_foreign_tables, StoreError};
use crate::source::server_url::ServerUrl;

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A schema in a PostgreSQL database.
    Postgres {
        /// The database.
        url: ServerUrl,
        /// The schema.
        schema: String,
    },
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres { url, schema } => write!(f, "{url} schema {schema}"),
        }
    }
}

/// PostgreSQL's text of the statements that differ.
pub(super) const DIALECT: Dialect = Dialect {
    create_staged_keys: "CREATE TEMP TABLE staged_keys (chat_id TEXT NOT NULL, phone TEXT, line BIGINT NOT NULL)",
    finish_staging: &[
        "CREATE TEMP TABLE input_keys (chat_id TEXT PRIMARY KEY, phone TEXT, line BIGINT NOT NULL)",
        "INSERT INTO input_keys (chat_id, phone, line)
         SELECT DISTINCT ON (chat_id) chat_id, phone, line FROM staged_keys
         ORDER BY chat_id, line",
        "DROP TABLE staged_keys",
    ],
    walk_keys_in_key_order: "",
    writer_session: None,
    erase_session: &[],
    create_due_keys: "CREATE TEMP TABLE due_keys (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT)",
    // Every query of the plan sees one snapshot, kept for publishing its keys.
    plan_isolation: Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
    plan_snapshot: Some("SELECT pg_current_snapshot()::text"),
    // On a shared store the runs of the workers alive now (their session is open) too, however
    // the runs between them ended.
    runs_not_over: runs_not_over!(
        " OR id IN (SELECT run_id FROM workers WHERE finished_at IS NULL
                    AND session_pid IN (SELECT pid FROM pg_stat_activity))"
    ),
    table_columns: "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
};

/// Creates the schema when missing, checks that the tables there are ours, applies the
/// migrations, and returns the options every connection of the store uses, with the session
/// connection this process keeps for its whole run (its instance leases are held on it).
pub(super) async fn open(
    url: &ServerUrl,
    schema: &str,
) -> Result<(PgConnectOptions, PgConnection), StoreError> {
    let shown = shown(url, schema);
    let base = PgConnectOptions::from_str(url.expose())
        .map_err(|e| open_error(&shown, e))?
        .disable_statement_logging();
    let mut conn = base.connect().await.map_err(|e| open_error(&shown, e))?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(&mut conn)
    .await?;
    refuse_foreign_tables(&shown, &names)?;
    // Workers starting together would race to create the schema (CREATE SCHEMA IF NOT EXISTS
    // is not safe against a concurrent one): one creates it and migrates while the others wait.
    sqlx::query("SELECT pg_advisory_lock(hashtext('greenrich schema'), hashtext($1))")
        .bind(schema)
        .execute(&mut conn)
        .await?;
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)).as_str())
        .await
        .map_err(|e| open_error(&shown, e))?;
    let options = in_schema(base, schema);
    let mut session = options.connect().await.map_err(|e| open_error(&shown, e))?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut session)
        .await
        .map_err(|e| StoreError::migration_failed(shown, e))?;
    conn.close().await?;
    Ok((options, session))
}

/// A connection to an existing store, for reading.
pub(super) async fn connect_existing(
    url: &ServerUrl,
    schema: &str,
) -> Result<PgConnection, StoreError> {
    let shown = shown(url, schema);
    let base = PgConnectOptions::from_str(url.expose())
        .map_err(|e| open_error(&shown, e))?
        .disable_statement_logging();
    let mut conn = in_schema(base, schema)
        .connect()
        .await
        .map_err(|e| open_error(&shown, e))?;
    let ours: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = $1 AND table_name = 'greenrich_meta')",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await?;
    if !ours {
        return Err(StoreError::Open {
            path: shown,
            message: format!("there is no greenrich store in schema {schema}"),
        });
    }
    Ok(conn)
}

/// The settings of every connection to a store in `schema`.
fn in_schema(base: PgConnectOptions, schema: &str) -> PgConnectOptions {
    base.options([
        ("search_path", quote(schema).as_str()),
        // `DROP TABLE IF EXISTS` and the like are not news.
        ("client_min_messages", "warning"),
        // A statement is planned for the tables as they are now: a plan cached while `products`
        // was empty scans it whole, and the writer's deletes grew slower with every batch.
        ("plan_cache_mode", "force_custom_plan"),
        // A worker's leases end with its session; if its host dies without closing the
        // connection, the server notices within about a minute instead of TCP's two hours.
        ("tcp_keepalives_idle", "30"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "3"),
    ])
}

/// The store, named in messages.
fn shown(url: &ServerUrl, schema: &str) -> String {
    StoreLocation::Postgres {
        url: url.clone(),
        schema: schema.to_string(),
    }
    .to_string()
}

fn open_error(shown: &str, e: sqlx::Error) -> StoreError {
    StoreError::Open {
        path: shown.to_string(),
        message: e.to_string(),
    }
}

/// `name` as a quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
