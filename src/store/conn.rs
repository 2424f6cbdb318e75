//! The seam between the store's code and its two engines: one connection to either kind of store,
//! [`on_conn!`], which runs the same statement text and row reading on either, and [`Dialect`],
//! the statements that differ, each written in its engine's module ([`super::sqlite`],
//! [`super::postgres`]). The shared SQL is the subset both engines speak (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`); what only PostgreSQL has (the shared queue, leases) lives in
//! [`super::shared`] on PostgreSQL's own connection type.

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, PgConnection, SqliteConnection};

/// A connection to a store.
pub(crate) enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$c` bound to the connection inside `$conn` (a `&mut Conn`), whichever
/// engine it is: the body is compiled once per engine, so it may use sqlx's typed API as usual.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::conn::Conn::Sqlite($c) => $body,
            $crate::store::conn::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

/// The statements whose text differs between the engines.
pub(crate) struct Dialect {
    /// The planner's de-duplicated input keys (`chat_id` primary key, `phone`, `line`).
    pub(crate) create_input_keys: &'static str,
    /// Fills `input_keys` from `staged_keys`: each key once, with its first line.
    pub(crate) fill_input_keys: &'static str,
    /// The plan's due keys, numbered in the order they are inserted (`seq`).
    pub(crate) create_due_keys: &'static str,
    /// Run first in the plan's transaction (PostgreSQL: one snapshot for all its queries).
    pub(crate) plan_isolation: Option<&'static str>,
    /// The plan's snapshot, kept for publishing its keys (PostgreSQL).
    pub(crate) plan_snapshot: Option<&'static str>,
    /// The start of the earliest run whose contacts are fresh for a run that began at `$1`.
    pub(crate) runs_not_over: &'static str,
    /// A table's column names (`$1`), in order.
    pub(crate) table_columns: &'static str,
}

/// The start of the earliest run whose contacts count as fresh for a run that began at $1:
/// the unbroken chain of runs since the last one that completed (interrupted, crashed, stopped
/// early, or still going: this one included), the runs that ended after this one began (workers
/// of a shared store that ran beside it), and whatever else an engine adds.
macro_rules! runs_not_over {
    ($($extra:literal)?) => {
        concat!(
            "SELECT MIN(started_at) FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs WHERE outcome = 'completed')
                OR finished_at >= $1"
            $(, $extra)?
        )
    };
}
pub(crate) use runs_not_over;

impl Conn {
    /// The statements of this connection's engine.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self {
            Conn::Sqlite(_) => &super::sqlite::DIALECT,
            Conn::Postgres(_) => &super::postgres::DIALECT,
        }
    }
}

/// How to open a connection to a store: kept by whoever may need a new one.
#[derive(Debug, Clone)]
pub(crate) enum Connector {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

impl Connector {
    /// A new connection.
    pub(crate) async fn connect(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Connector::Sqlite(options) => Conn::Sqlite(options.connect().await?),
            Connector::Postgres(options) => Conn::Postgres(options.connect().await?),
        })
    }
}
