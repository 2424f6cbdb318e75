//! A store in a SQLite file: opened with its run lock (one run at a time), WAL journal and
//! migrations, and the statements whose SQLite text differs from PostgreSQL's.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::dialect::{runs_not_over, Dialect};
use super::{refuse_foreign_tables, StoreError};

/// SQLite's text of the statements that differ.
pub(super) const DIALECT: Dialect = Dialect {
    // Keyed by line, the keys are appended in input order and stay in it (the plan lists the
    // never-fetched ones with no sort). One sort builds the index by key, and a scan of it finds
    // the repeated keys. (A GROUP BY into a table keyed by chat id, then an ORDER BY line, sorted
    // twice: 2.4 s against 1.6 s for a million keys.) The index holds the phone too: the stale
    // contacts, read in freshness order, find their key in it without a read of the table.
    create_staged_keys: "CREATE TEMP TABLE staged_keys (line INTEGER PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT)",
    finish_staging: &[
        "CREATE INDEX temp.input_keys_by_key ON staged_keys (chat_id, line, phone)",
        "DELETE FROM staged_keys WHERE line IN (
             SELECT s.line FROM (SELECT chat_id, MIN(line) AS first FROM staged_keys
                                 GROUP BY chat_id HAVING COUNT(*) > 1) d
             JOIN staged_keys s ON s.chat_id = d.chat_id AND s.line > d.first)",
        "ALTER TABLE staged_keys RENAME TO input_keys",
    ],
    // Without it SQLite walks them in line order (no sort for the ORDER BY), which is best when
    // there are no contacts to look up: a first import.
    walk_keys_in_key_order: "INDEXED BY input_keys_by_key",
    // Each multi-row upsert keeps a statement journal, in a temporary file unless told
    // otherwise: a few hundred KiB at most, written and read for every batch the writer commits.
    // (Only the writer's connection: the planner's temporary tables stay on disk.)
    writer_session: Some("PRAGMA temp_store = MEMORY"),
    // Deleted rows are overwritten with zeros, not left in free space, and the keys to erase
    // stay in memory rather than in a temporary file.
    erase_session: &["PRAGMA secure_delete = ON", "PRAGMA temp_store = MEMORY"],
    create_due_keys: "CREATE TEMP TABLE due_keys (seq INTEGER PRIMARY KEY, chat_id TEXT NOT NULL, phone TEXT)",
    // One run at a time holds the file: its transaction sees what it needs.
    plan_isolation: None,
    plan_snapshot: None,
    runs_not_over: runs_not_over!(),
    table_columns: "SELECT name FROM pragma_table_info($1) ORDER BY cid",
};

/// Opens (creating if missing) the store at `path`: checks that its tables are ours, takes the
/// run lock, applies the migrations. Returns the options of every connection, and the lock.
pub(super) async fn open(
    path: &Path,
    lock_timeout: Duration,
) -> Result<(SqliteConnectOptions, File), StoreError> {
    let shown = path.display().to_string();
    check_tables_are_ours(path).await?;
    let lock = take_lock(path)?;
    // Created here, owner only, before SQLite creates it with its own mode.
    crate::private::open_or_create(path).map_err(|e| StoreError::Open {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .map_err(|e| StoreError::Open {
            path: shown.clone(),
            message: e.to_string(),
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // SQLite counts the wait in milliseconds in an i32 (24.8 days at most).
        .busy_timeout(lock_timeout.min(Duration::from_millis(i32::MAX as u64)))
        .disable_statement_logging();
    let mut conn = options.connect().await.map_err(|e| StoreError::Open {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::migration_failed(shown, e))?;
    conn.close().await?;
    Ok((options, lock))
}

/// Opens an existing store read-only.
pub(super) async fn open_read_only(path: &Path) -> Result<SqliteConnection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    plain_options(path, true)
        .connect()
        .await
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// An OS file lock beside the database: released by the kernel when the process dies, so a
/// crashed run never blocks the next one.
fn take_lock(path: &Path) -> Result<File, StoreError> {
    let lock = lock_path(path);
    let file = crate::private::open_or_create(&lock).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: format!("cannot create the lock file {}: {e}", lock.display()),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.display().to_string(),
            lock: format!("lock file {}", lock.display()),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: path.display().to_string(),
            message: format!("cannot lock {}: {e}", lock.display()),
        }),
    }
}

/// Refuses a database that holds a table named like ours that greenrich did not create. Uses a
/// read-only connection, so a refused database is not changed in any way (but for a hot journal
/// a crash left, which is rolled back first, as any SQLite client does).
async fn check_tables_are_ours(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let names = match table_names(path, true).await {
        // A run killed while it created the file left a hot rollback journal, which a read-only
        // connection cannot roll back. Any read-write connection does it (the file goes back to
        // its last committed state); then the tables are read.
        Err(e) if needs_rollback(&e) => table_names(path, false).await,
        read => read,
    };
    let names = names.map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: format!("not a SQLite database ({e})"),
    })?;
    refuse_foreign_tables(&path.display().to_string(), &names)
}

/// The tables and views of the database at `path`, read on a connection of its own.
async fn table_names(path: &Path, read_only: bool) -> Result<Vec<String>, sqlx::Error> {
    let mut conn = plain_options(path, read_only).connect().await?;
    let names =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            .fetch_all(&mut conn)
            .await?;
    conn.close().await?;
    Ok(names)
}

/// A connection to the file at `path` with none of a run's settings (no journal mode set).
fn plain_options(path: &Path, read_only: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .disable_statement_logging()
}

/// SQLite's SQLITE_READONLY_ROLLBACK and SQLITE_READONLY_RECOVERY: a read-only connection found
/// a journal or a WAL that a crash left to be rolled back or recovered.
fn needs_rollback(e: &sqlx::Error) -> bool {
    const READONLY_ROLLBACK: &str = "776";
    const READONLY_RECOVERY: &str = "1288";
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == READONLY_ROLLBACK || code == READONLY_RECOVERY)
}
