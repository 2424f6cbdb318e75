//! One connection to either kind of store, SQLite or PostgreSQL, and [`on_conn!`], which runs the
//! same statement text and the same row reading on either: the store's SQL is written in the
//! subset both engines share (`$N` placeholders, `ON CONFLICT`, `RETURNING`), and the few places
//! where they differ ask [`Conn::engine`].

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, PgConnection, SqliteConnection};

/// The engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

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
    /// Which engine this is.
    pub(crate) fn engine(&self) -> Engine {
        match self {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
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
