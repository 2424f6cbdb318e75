//! Database server URLs (`postgres://…`, `mysql://…`, `mariadb://…`): which engine, the URL to
//! connect with, and a form fit to show, with the password masked like an API token.

use crate::redact::MASK;

/// The database engines greenrich reads tables from over the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Engine {
    /// The engine's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mysql => "MySQL",
        }
    }
}

/// A server URL: the real one for connecting, and a shown one with the password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// The engine, from the scheme.
    pub engine: Engine,
    /// The URL as given (its password, if any, is registered for masking by value).
    url: String,
    shown: String,
}

impl std::fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The text is not a usable server URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadServerUrl(String);

impl ServerUrl {
    /// A server URL if `text` starts with a database scheme (`Ok(None)` for anything else, such
    /// as a file path). The password, if any, is registered for masking.
    pub fn parse(text: &str) -> Result<Option<ServerUrl>, BadServerUrl> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(None);
        };
        let engine = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            _ => return Ok(None),
        };
        // Registered first: whatever repeats `text` (clap does when the value is refused) masks
        // the password too, even when the URL does not parse.
        if let Some(raw) = url_password(text) {
            crate::redact::register(raw);
        }
        let mut url = reqwest::Url::parse(text).map_err(|e| {
            BadServerUrl(format!(
                "the {} URL {} is not valid: {e}",
                engine.name(),
                masked_by_hand(text)
            ))
        })?;
        if engine == Engine::Mysql && url.scheme() != "mysql" {
            // sqlx knows MariaDB by the MySQL scheme.
            let _ = url.set_scheme("mysql");
        }
        let real = url.to_string();
        let mut shown = url.clone();
        if let Some(password) = url.password() {
            crate::redact::register(password);
            let _ = shown.set_password(Some(MASK));
        }
        // libpq and sqlx also take the password as a parameter (`?password=…`).
        if url.query_pairs().any(|(k, _)| is_password_key(&k)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    if is_password_key(&k) {
                        crate::redact::register(&v);
                        (k.into_owned(), MASK.to_string())
                    } else {
                        (k.into_owned(), v.into_owned())
                    }
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let shown = shown.to_string();
        Ok(Some(ServerUrl {
            engine,
            url: real,
            shown,
        }))
    }

    /// The URL to connect with, and nothing else.
    pub(crate) fn expose(&self) -> &str {
        &self.url
    }
}

/// The password of `scheme://user:password@…`, found by hand (the text need not be a valid URL).
fn user_password(text: &str) -> Option<&str> {
    let (_, after) = text.split_once("://")?;
    let authority_end = after.find(['/', '?']).unwrap_or(after.len());
    let (user_info, _) = after[..authority_end].rsplit_once('@')?;
    user_info.split_once(':').map(|(_, password)| password)
}

/// Query parameters that carry a password (libpq's names).
fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

/// The password in `text`, as written: in the user part (`user:password@`) or as a parameter
/// (`?password=…`). Found by hand, so it works on text that is not a valid URL too.
pub(crate) fn url_password(text: &str) -> Option<&str> {
    if let Some(password) = user_password(text) {
        return Some(password);
    }
    let (_, query) = text.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| is_password_key(key))
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// `text` with its password masked, for a URL that did not parse.
fn masked_by_hand(text: &str) -> String {
    match url_password(text) {
        Some(password) => text.replace(password, MASK),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_engines_and_masks_the_password() {
        let url = ServerUrl::parse("postgres://crm:s3cret-pass@db.example:5432/crm")
            .unwrap()
            .unwrap();
        assert_eq!(url.engine, Engine::Postgres);
        assert_eq!(url.to_string(), "postgres://crm:***@db.example:5432/crm");
        assert_eq!(format!("{url:?}"), "postgres://crm:***@db.example:5432/crm");
        assert!(url.expose().contains("s3cret-pass"));
        assert_eq!(
            crate::redact::mask("auth failed for s3cret-pass"),
            "auth failed for ***"
        );
        let maria = ServerUrl::parse("mariadb://root@127.0.0.1/test")
            .unwrap()
            .unwrap();
        assert_eq!(maria.engine, Engine::Mysql);
        assert_eq!(maria.expose(), "mysql://root@127.0.0.1/test");
        assert_eq!(maria.to_string(), "mysql://root@127.0.0.1/test");
    }

    #[test]
    fn a_password_given_as_a_parameter_is_masked_too() {
        for text in [
            "postgres://crm@db.example/crm?password=Param-secret-1&sslmode=disable",
            "postgresql://crm@db.example/crm?sslmode=disable&password=Param-secret-1",
            "mysql://shop@127.0.0.1/wp?password=Param-secret-1",
        ] {
            let url = ServerUrl::parse(text).unwrap().unwrap();
            assert!(!url.to_string().contains("Param-secret-1"), "{url}");
            assert!(!format!("{url:?}").contains("Param-secret-1"), "{url:?}");
            assert!(url.to_string().contains("password=***"), "{url}");
            assert!(url.expose().contains("Param-secret-1"));
            assert_eq!(url_password(text), Some("Param-secret-1"), "{text}");
        }
        assert_eq!(
            crate::redact::mask("auth failed: Param-secret-1"),
            "auth failed: ***"
        );
        assert_eq!(url_password("postgres://crm@db/crm?sslmode=require"), None);
        assert_eq!(
            url_password("postgres://crm:pw-in-userinfo@db/crm"),
            Some("pw-in-userinfo")
        );
        let bad = ServerUrl::parse("postgres://crm@db host/crm?password=Param-secret-2")
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("Param-secret-2"), "{bad}");
    }

    #[test]
    fn files_are_not_server_urls() {
        assert_eq!(ServerUrl::parse("contacts.csv"), Ok(None));
        assert_eq!(ServerUrl::parse("C:\\exports\\list.csv"), Ok(None));
        assert_eq!(ServerUrl::parse("https://example.com/list.csv"), Ok(None));
    }

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let err = ServerUrl::parse("postgres://crm:hunter2-long@db host/crm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://crm:***@db host/crm"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
