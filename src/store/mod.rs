//! The working store: a SQLite database, or a schema in PostgreSQL, holding `contacts`,
//! `products`, `failures`, `runs` and `input_rows`, and the view `enriched`.
//!
//! All SQL lives in this module: the rest of the job talks to [`Store`], the stager and the
//! plan, the [`writer::Writer`] and the reader, never to SQL directly. The engine is chosen once,
//! in [`Store::open`]: each has its own module ([`sqlite`], [`postgres`]) for opening and for the
//! statements whose text differs; the rest is the SQL both speak, run through [`conn`]. What
//! only a shared PostgreSQL store has (leases, the work queue) is in [`shared`].

mod changes;
pub(crate) mod conn;
mod dialect;
pub(crate) mod erase;
mod handles;
pub(crate) mod ledger;
pub(crate) mod links;
pub(crate) mod person;
pub(crate) mod plan;
mod postgres;
pub(crate) mod read;
pub(crate) mod shared;
mod sqlite;
pub(crate) mod staging;
pub(crate) mod writer;

use std::fs::File;
use std::time::Duration;

use conn::{Conn, Connector};
use plan::DuePlan;
pub use postgres::StoreLocation;
use shared::{SharedStore, WorkQueue};

/// Tables greenrich creates; a database that has one of them without greenrich's marker table is
/// someone else's, and is left untouched.
const OUR_TABLES: [&str; 10] = [
    "suppressed",
    "contacts",
    "changes",
    "handles",
    "run_minutes",
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
    #[error("cannot set up the schema in {path}: {source}")]
    Migrate {
        /// The database.
        path: String,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },

    /// A statement failed (disk full, database locked, ...).
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// This process, as a worker of a PostgreSQL store (its row in `workers`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerId(pub(crate) i64);

impl StoreError {
    /// The migrations of the store `path` failed.
    fn migration_failed(path: String, source: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migrate { path, source }
    }

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

/// An open store: a SQLite file, which holds the run lock for as long as it lives, or a
/// PostgreSQL schema, which many workers share.
pub struct Store {
    connector: Connector,
    engine: Engine,
}

/// A run's due keys, as they reach it.
pub(crate) enum Work<'a> {
    /// Its own plan, read a page at a time (a SQLite store: one run at a time).
    Plan(DuePlan),
    /// The store's queue, which every worker of the store claims from (PostgreSQL).
    Shared(&'a SharedStore, WorkQueue),
}

/// What each engine's store holds beyond its connections.
enum Engine {
    /// The run lock of the SQLite file.
    Sqlite { _lock: File },
    /// The PostgreSQL store's shared work.
    Postgres(Box<SharedStore>),
}

impl Store {
    /// Opens (creating if missing) the store at `location`, checks that the tables there are
    /// ours, takes the run lock (SQLite), and applies the migrations. `lock_timeout` is how long
    /// a SQLite write waits for a database locked by another program.
    pub async fn open(
        location: &StoreLocation,
        lock_timeout: Duration,
    ) -> Result<Store, StoreError> {
        let (connector, engine) = match location {
            StoreLocation::Sqlite(path) => {
                let (options, lock) = sqlite::open(path, lock_timeout).await?;
                (Connector::Sqlite(options), Engine::Sqlite { _lock: lock })
            }
            StoreLocation::Postgres { url, schema } => {
                let (options, session) = postgres::open(url, schema).await?;
                let shared = Box::new(SharedStore::new(session, options.clone()));
                (Connector::Postgres(options), Engine::Postgres(shared))
            }
        };
        Ok(Store { connector, engine })
    }

    /// The work this store shares between workers: only a PostgreSQL store has it (a SQLite
    /// store has one run at a time, which holds every instance and its own plan).
    pub(crate) fn shared(&self) -> Option<&SharedStore> {
        match &self.engine {
            Engine::Postgres(shared) => Some(shared),
            Engine::Sqlite { .. } => None,
        }
    }

    pub(crate) async fn connect(&self) -> Result<Conn, StoreError> {
        Ok(self.connector.connect().await?)
    }

    /// Hands a run's plan out: on a SQLite store the run reads it a page at a time; on a
    /// PostgreSQL store it is published to the store's queue, which every worker claims from.
    pub(crate) async fn hand_out(&self, plan: DuePlan) -> Result<Work<'_>, StoreError> {
        Ok(match (self.shared(), plan.conn) {
            (Some(shared), Conn::Postgres(conn)) => {
                let queue = WorkQueue::publish(conn, plan.snapshot.as_deref()).await?;
                Work::Shared(shared, queue)
            }
            (_, conn) => Work::Plan(DuePlan { conn, ..plan }),
        })
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
