//! Where a flag points, parsed once by clap: the input of `enrich` (a file, `sqlite:PATH`, or a
//! database URL) and a store (`--output`, `--db`: a path, or a PostgreSQL URL).

use std::path::PathBuf;

use crate::config::InvalidValue;
use crate::source::server_url::{Engine, ServerUrl};

/// What `--input` names.
#[derive(Debug, Clone)]
pub enum InputLocation {
    /// A table in a PostgreSQL or MySQL database.
    Server(ServerUrl),
    /// A table in a SQLite database (`sqlite:PATH`).
    Sqlite(PathBuf),
    /// A CSV file or a workbook.
    File(PathBuf),
}

/// Parses `--input`.
pub(super) fn parse_input(text: &str) -> Result<InputLocation, InvalidValue> {
    if let Some(url) = ServerUrl::parse(text).map_err(|e| InvalidValue(e.to_string()))? {
        return Ok(InputLocation::Server(url));
    }
    Ok(match text.strip_prefix("sqlite:") {
        Some(path) => InputLocation::Sqlite(PathBuf::from(path)),
        None => InputLocation::File(PathBuf::from(text)),
    })
}

/// What `--output` or `--db` names: a path (a SQLite file, or a folder for CSV files), or a
/// PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Location {
    /// A PostgreSQL database.
    Postgres(ServerUrl),
    /// A path.
    Path(PathBuf),
}

/// Parses `--output` and `--db`.
pub(super) fn parse_location(text: &str) -> Result<Location, InvalidValue> {
    match ServerUrl::parse(text).map_err(|e| InvalidValue(e.to_string()))? {
        Some(url) if url.engine == Engine::Postgres => Ok(Location::Postgres(url)),
        Some(url) => Err(InvalidValue(format!(
            "a store cannot be kept in {} ({url}): use a SQLite file or PostgreSQL",
            url.engine.name()
        ))),
        None => Ok(Location::Path(PathBuf::from(text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_told_apart_by_their_scheme() {
        assert!(matches!(
            parse_input("postgres://u@h/db"),
            Ok(InputLocation::Server(_))
        ));
        assert!(
            matches!(parse_input("sqlite:crm.db"), Ok(InputLocation::Sqlite(p)) if p.as_os_str() == "crm.db")
        );
        assert!(matches!(parse_input("c.csv"), Ok(InputLocation::File(_))));
        assert!(matches!(
            parse_location("postgresql://u@h/db"),
            Ok(Location::Postgres(_))
        ));
        assert!(matches!(parse_location("out.db"), Ok(Location::Path(_))));
        let mysql = parse_location("mysql://u:pw-123456@h/db").unwrap_err();
        assert!(mysql.0.contains("cannot be kept in MySQL"), "{mysql}");
        assert!(!mysql.0.contains("pw-123456"), "{mysql}");
    }
}
