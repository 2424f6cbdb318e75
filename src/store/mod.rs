//! The working store: a SQLite database, or a schema in PostgreSQL, holding `contacts`,
//! `products`, `failures`, `runs` and `input_rows`, and the view `enriched`.
//!
//! All SQL lives in this module: the rest of the job talks to [`Store`], the planner, the
//! [`writer::Writer`] and the reader, never to SQL directly. The SQL is written once for both
//! engines (see [`conn`]).

pub(crate) mod conn;
pub mod ledger;
pub(crate) mod links;
pub mod plan;
mod postgres;
pub(crate) mod read;
pub(crate) mod workers;
pub mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use conn::{Conn, Connector};
pub use postgres::StoreLocation;

/// Tables greenrich creates; a database that has one of them without greenrich's marker table is
/// someone else's, and is left untouched.
const OUR_TABLES: [&str; 6] = [
    "contacts",
    "products",
    "failures",
    "runs",
    "input_rows",
    "enriched",
];
const MARKER_TABLE: &str = "greenrich_meta";

/// The store cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database has tables of our names that greenrich did not create.
    #[error("the output database {path} already has a table named {tables} that greenrich did not create; nothing was changed. Write to another file, or rename that table")]
    ForeignTables {
        /// The database.
        path: String,
        /// The clashing tables.
        tables: String,
    },
    /// Every instance of the pool is leased by another worker of the store (`--no-wait`).
    #[error("every instance of the pool ({instances}) is in use by another greenrich worker of {store}; nothing was done")]
    InstancesBusy {
        /// The store.
        store: String,
        /// The pool's instance ids.
        instances: String,
    },
    /// Another run holds the store's lock.
    #[error("another greenrich run is using {path} ({lock}); wait for it to finish")]
    Locked {
        /// The database.
        path: String,
        /// The lock it holds.
        lock: String,
    },
    /// The database cannot be opened.
    #[error("cannot open the output database {path}: {message}")]
    Open {
        /// The database.
        path: String,
        /// Why.
        message: String,
    },
    /// The migrations failed.
    #[error("cannot set up the schema in {path}: {message}")]
    Migrate {
        /// The database.
        path: String,
        /// Why.
        message: String,
    },
    /// A statement failed (disk full, database locked, ...).
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// This process, as a worker of a PostgreSQL store (its row in `workers`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerId(pub(crate) i64);

impl StoreError {
    /// The connection to the store ended (the server restarted, the session was terminated, the
    /// network was cut): a new connection may work where this one cannot.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) => true,
            StoreError::Sql(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                // Class 08: connection exception; 57P01–57P03: the server shut the session down.
                code.starts_with("08") || code.starts_with("57P0")
            }),
            _ => false,
        }
    }
}

/// An open store. A SQLite store holds the run lock for as long as it lives.
pub struct Store {
    connector: Connector,
    kind: Kind,
}

enum Kind {
    Sqlite {
        _lock: File,
    },
    Postgres {
        /// The connection this process keeps open for its whole run: its instance leases are
        /// session locks on it.
        session: tokio::sync::Mutex<sqlx::PgConnection>,
    },
}

impl Store {
    /// Opens (creating if missing) the store at `location`, checks that the tables there are
    /// ours, takes the run lock (SQLite), and applies the migrations. `lock_timeout` is how long
    /// a SQLite write waits for a database locked by another program.
    pub async fn open(
        location: &StoreLocation,
        lock_timeout: Duration,
    ) -> Result<Store, StoreError> {
        let (connector, kind) = match location {
            StoreLocation::Sqlite(path) => {
                let (options, lock) = open_sqlite(path, lock_timeout).await?;
                (Connector::Sqlite(options), Kind::Sqlite { _lock: lock })
            }
            StoreLocation::Postgres { url, schema } => {
                let (options, session) = postgres::open(url, schema).await?;
                let session = tokio::sync::Mutex::new(session);
                (Connector::Postgres(options), Kind::Postgres { session })
            }
        };
        Ok(Store { connector, kind })
    }

    pub(crate) async fn connect(&self) -> Result<Conn, StoreError> {
        Ok(self.connector.connect().await?)
    }

    /// How to open more connections to this store.
    pub(crate) fn connector(&self) -> Connector {
        self.connector.clone()
    }
}

/// The last item of each key, in their order: one multi-row `INSERT … ON CONFLICT DO UPDATE`
/// may not name a row twice (PostgreSQL refuses it: "cannot affect row a second time"), and the
/// last value is the one a row-by-row upsert would have left.
pub(crate) fn last_per_key<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    items
        .iter()
        .enumerate()
        .filter(|(i, item)| last.get(key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

async fn open_sqlite(
    path: &Path,
    lock_timeout: Duration,
) -> Result<(SqliteConnectOptions, File), StoreError> {
    let shown = path.display().to_string();
    check_tables_are_ours(path).await?;
    let lock = take_lock(path)?;
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
        .map_err(|e| StoreError::Migrate {
            path: shown,
            message: e.to_string(),
        })?;
    conn.close().await?;
    Ok((options, lock))
}

/// Opens an existing store read-only.
async fn open_read_only(path: &Path) -> Result<SqliteConnection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Open {
            path: path.display().to_string(),
            message: "no such file".into(),
        });
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    options.connect().await.map_err(|e| StoreError::Open {
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
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| StoreError::Open {
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
/// read-only connection, so a refused database is not changed in any way.
async fn check_tables_are_ours(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let mut conn = open_read_only(path).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("not a SQLite database ({e})"),
            })?;
    conn.close().await?;
    refuse_foreign_tables(&path.display().to_string(), &names)
}

/// A database (or schema) whose tables are `names` is ours, or new, or someone else's.
fn refuse_foreign_tables(shown: &str, names: &[String]) -> Result<(), StoreError> {
    if names.iter().any(|n| n == MARKER_TABLE) {
        return Ok(());
    }
    let clashes: Vec<&str> = OUR_TABLES
        .into_iter()
        .filter(|t| names.iter().any(|n| n.eq_ignore_ascii_case(t)))
        .collect();
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(StoreError::ForeignTables {
            path: shown.to_string(),
            tables: clashes.join(", "),
        })
    }
}
