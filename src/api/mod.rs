//! The GREEN-API client: instances, one request per call, reading capped bodies, and classifying
//! answers with the error taxonomy. Pacing and retries are driven by the fetch stage.

pub(crate) mod classify;
pub(crate) mod pacer;
pub(crate) mod state;

use std::time::Duration;

use crate::chat_id::Messenger;
use crate::domain::InvalidValue;
use crate::reason::Reason;
use crate::redact::{mask, Secret};
pub(crate) use classify::{Account, Answer, Problem, Verdict};
pub(crate) use state::InstanceState;

/// The biggest body read from one answer; a real contact answer is a few kilobytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One GREEN-API instance: its id and token.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The `idInstance`.
    pub id: String,
    /// The `apiTokenInstance`; it prints as `***`.
    pub token: Secret,
}

/// An instance written in a shape other than `id:token`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInstance(String);

impl Instance {
    /// Parses `id:token`.
    pub fn parse(spec: &str) -> Result<Instance, InvalidInstance> {
        let (id, token) = spec
            .trim()
            .split_once(':')
            .ok_or_else(|| InvalidInstance("an instance must be written as id:token".into()))?;
        let id = id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidInstance(format!(
                "instance id '{id}' must be digits"
            )));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(InvalidInstance(format!("instance {id} has an empty token")));
        }
        Ok(Instance {
            id: id.to_string(),
            token: Secret::new(token),
        })
    }
}

/// Where the API is (`GREEN_API_URL`): an `http://` or `https://` URL, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl(reqwest::Url);

impl ApiUrl {
    /// `text` as the API's URL.
    pub fn parse(text: &str) -> Result<ApiUrl, InvalidValue> {
        let text = text.trim().trim_end_matches('/');
        if !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(InvalidValue(format!(
                "GREEN_API_URL must start with http:// or https:// (got '{text}')"
            )));
        }
        reqwest::Url::parse(text).map(ApiUrl).map_err(|e| {
            InvalidValue(format!("GREEN_API_URL '{text}' is not a valid URL ({e}); set it to the apiUrl shown in your console"))
        })
    }

    /// The URL without a trailing `/`, to which method paths are added.
    fn base(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl std::fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base())
    }
}

/// The HTTP client cannot be built: a fatal error of the run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused its settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// One shared HTTP client for every instance.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base_url: String,
    messenger: Messenger,
}

impl Client {
    pub(crate) fn new(
        url: &ApiUrl,
        messenger: Messenger,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        if let Some(warning) = cleartext_warning(&url.0) {
            tracing::warn!("{warning}");
        }
        // The token is in every URL's path: a redirect would carry it to another host, and a
        // Referer would repeat it there. Neither is followed nor sent.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("greenrich/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(describe(&e)))?;
        Ok(Client {
            http,
            base_url: url.base().to_string(),
            messenger,
        })
    }

    fn url(&self, instance: &Instance, method: &str) -> String {
        // Telegram's URL is taken as it is: GREEN_API_URL carries any prefix its host needs.
        let prefix = match self.messenger {
            Messenger::Whatsapp | Messenger::Telegram => "",
            Messenger::Max => "/v3",
        };
        format!(
            "{}{prefix}/waInstance{}/{method}/{}",
            self.base_url,
            instance.id,
            instance.token.expose()
        )
    }

    /// One `getContactInfo` call.
    pub(crate) async fn contact_info(&self, instance: &Instance, chat_id: &str) -> Verdict {
        let body = serde_json::json!({ "chatId": chat_id }).to_string();
        let request = self
            .http
            .post(self.url(instance, "getContactInfo"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request).await
    }

    /// One Telegram `checkAccount` call for a phone number (`+digits`) or an `@username`.
    pub(crate) async fn check_account(&self, instance: &Instance, handle: &str) -> Verdict {
        let body = match handle.strip_prefix('+').map(str::parse::<u64>) {
            Some(Ok(phone)) => serde_json::json!({ "phoneNumber": phone }),
            _ => serde_json::json!({ "username": handle }),
        };
        let request = self
            .http
            .post(self.url(instance, "checkAccount"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(request).await
    }

    /// One `getStateInstance` call: the state, or the problem that kept it from being read.
    pub(crate) async fn state(&self, instance: &Instance) -> Result<InstanceState, Verdict> {
        match self
            .send(self.http.get(self.url(instance, "getStateInstance")))
            .await
        {
            Verdict::Answer(answer) => Ok(InstanceState::parse(&answer.object)),
            other => Err(other),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Verdict {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return network_problem(&e),
        };
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return redirected(status, response.headers());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| classify::parse_retry_after(v, chrono::Utc::now()));
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                        // Most likely a proxy's page or a glitch, not the key's fault: tried
                        // again, and due again later if it lasts.
                        return Verdict::Transient(Problem::new(
                            Reason::BodyTooLarge,
                            Some(status),
                            format!("the answer is larger than {MAX_BODY_BYTES} bytes; not read"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return network_problem(&e),
            }
        }
        classify::classify(status, &String::from_utf8_lossy(&bytes), retry_after)
    }
}

/// Plain `http://` to a host that is not this machine: the token would cross the network in clear.
fn cleartext_warning(url: &reqwest::Url) -> Option<String> {
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "GREEN_API_URL is plain http:// to {}: the instance token would cross the network in clear; use https://",
            mask(host)
        )
    })
}

/// A 3xx: the API URL is wrong. The instance is left out (every call would be redirected), and
/// the target is named without following it.
fn redirected(status: u16, headers: &reqwest::header::HeaderMap) -> Verdict {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|location| {
            reqwest::Url::parse(location)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "another path".to_string())
        })
        .unwrap_or_else(|| "an address it does not name".to_string());
    Verdict::InstanceUnusable(Problem::new(
        Reason::Redirected,
        Some(status),
        format!(
            "HTTP {status}: the API URL redirects to {}; set GREEN_API_URL to the apiUrl shown in your console (greenrich follows no redirect: the token is in the URL)",
            mask(&target)
        ),
    ))
}

fn network_problem(error: &reqwest::Error) -> Verdict {
    let reason = if error.is_timeout() {
        Reason::Timeout
    } else if error.is_connect() {
        Reason::ConnectError
    } else {
        Reason::NetworkError
    };
    Verdict::Transient(Problem::new(reason, None, describe(error)))
}

/// A reqwest error as text, without its URL (which holds the token) and masked all the same.
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    mask(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> ApiUrl {
        ApiUrl::parse(text).unwrap()
    }

    #[test]
    fn instances_parse_and_hide_their_token() {
        let i = Instance::parse(" 1101000001 : secret-token-abcdef ").unwrap();
        assert_eq!(i.id, "1101000001");
        assert_eq!(i.token.expose(), "secret-token-abcdef");
        assert!(!format!("{i:?}").contains("secret-token-abcdef"));
        assert!(Instance::parse("no-colon").is_err());
        assert!(Instance::parse("abc:tok").is_err());
        assert!(Instance::parse("123:").is_err());
    }

    #[test]
    fn plain_http_is_only_quiet_on_this_machine() {
        let warn = |u: &str| cleartext_warning(&reqwest::Url::parse(u).unwrap());
        assert!(warn("http://api.green-api.com")
            .unwrap()
            .contains("in clear"));
        assert!(warn("http://10.1.2.3:8080").is_some());
        assert_eq!(warn("https://api.green-api.com"), None);
        assert_eq!(warn("http://127.0.0.1:8080"), None);
        assert_eq!(warn("http://localhost:8080"), None);
        assert_eq!(warn("http://[::1]:8080"), None);
    }

    #[test]
    fn an_api_url_is_http_or_https_and_a_url() {
        let not_a_url = ApiUrl::parse("http://exa mple").unwrap_err();
        assert!(not_a_url.0.contains("is not a valid URL"), "{not_a_url}");
        let ftp = ApiUrl::parse("ftp://h").unwrap_err();
        assert!(ftp.0.contains("must start with http://"), "{ftp}");
        assert_eq!(
            ApiUrl::parse(" https://h/ ").unwrap().to_string(),
            "https://h"
        );
    }

    #[test]
    fn urls_follow_the_flavour() {
        let i = Instance::parse("7:tok-123456").unwrap();
        let wa = Client::new(
            &url("http://h/"),
            Messenger::Whatsapp,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            wa.url(&i, "getContactInfo"),
            "http://h/waInstance7/getContactInfo/tok-123456"
        );
        let max = Client::new(&url("http://h"), Messenger::Max, Duration::from_secs(1)).unwrap();
        assert_eq!(
            max.url(&i, "getContactInfo"),
            "http://h/v3/waInstance7/getContactInfo/tok-123456"
        );
    }
}
