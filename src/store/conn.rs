//! The seam between the store's code and its two engines: one connection to either kind of store,
//! [`on_conn!`], which runs the same statement text and row reading on either, and the engine's
//! [`Dialect`], the statements that differ, each written in its engine's module
//! ([`super::sqlite`], [`super::postgres`]). The shared SQL is the subset both engines speak (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`); what only PostgreSQL has (the shared queue, leases) lives in
//! [`super::shared`] on PostgreSQL's own connection type.

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, PgConnection, SqliteConnection};

use super::dialect::Dialect;

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
