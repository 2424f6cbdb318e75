//! Credentials and the API's address, read from the environment (never from flags or files, so
//! they stay out of shell history, `ps` and config files): `GREEN_API_INSTANCES=id:token,...` or
//! `GREEN_API_ID_INSTANCE` + `GREEN_API_TOKEN_INSTANCE`, and `GREEN_API_URL`.

use crate::api::{ApiUrl, Instance};
use crate::config::defaults;

/// The credentials in the environment are missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(String);

/// The instance pool.
pub(crate) fn instances(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Instance>, CredentialsError> {
    if let Some(pool) = get("GREEN_API_INSTANCES").filter(|v| !v.trim().is_empty()) {
        let instances = pool
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Instance::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CredentialsError(format!("GREEN_API_INSTANCES: {e}")))?;
        if instances.is_empty() {
            return Err(CredentialsError(
                "GREEN_API_INSTANCES lists no instance".into(),
            ));
        }
        return Ok(instances);
    }
    match (get("GREEN_API_ID_INSTANCE"), get("GREEN_API_TOKEN_INSTANCE")) {
        (Some(id), Some(token)) => Instance::parse(&format!("{id}:{token}"))
            .map(|i| vec![i])
            .map_err(|e| CredentialsError(e.to_string())),
        _ => Err(CredentialsError("no credentials: set GREEN_API_ID_INSTANCE and GREEN_API_TOKEN_INSTANCE, or GREEN_API_INSTANCES=id:token,id:token (see the README)".into())),
    }
}

/// The API's address: `GREEN_API_URL`, or GREEN-API's default host when it is unset.
pub(crate) fn api_url(get: impl Fn(&str) -> Option<String>) -> Result<ApiUrl, CredentialsError> {
    let url = get("GREEN_API_URL")
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| defaults::API_URL.to_string());
    ApiUrl::parse(&url).map_err(|e| CredentialsError(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let pool = instances(env(&[(
            "GREEN_API_INSTANCES",
            "1:token-aaaaaa, 2:token-bbbbbb",
        )]))
        .unwrap();
        assert_eq!(pool.len(), 2);
        assert_eq!(pool[1].id, "2");
        let one = instances(env(&[
            ("GREEN_API_ID_INSTANCE", "7"),
            ("GREEN_API_TOKEN_INSTANCE", "token-cccccc"),
        ]))
        .unwrap();
        assert_eq!(one[0].id, "7");
        assert!(instances(env(&[]))
            .unwrap_err()
            .to_string()
            .contains("GREEN_API_ID_INSTANCE"));
        assert!(instances(env(&[("GREEN_API_INSTANCES", "bad")])).is_err());
    }

    #[test]
    fn the_api_url_defaults_and_is_checked_once() {
        assert_eq!(api_url(env(&[])).unwrap().to_string(), defaults::API_URL);
        let wrong = api_url(env(&[("GREEN_API_URL", "api.green-api.com")])).unwrap_err();
        assert!(
            wrong.to_string().contains("must start with http://"),
            "{wrong}"
        );
    }
}
