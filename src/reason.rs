//! Why a key failed: the codes stored in `failures.reason`, counted in summaries and shown by
//! `status` and `failures`.

use std::fmt;

/// A failure's reason. Serialised (and stored) as its snake_case code, such as `invalid_id`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The input value cannot be a chat id; no call was made.
    InvalidId,
    /// The input row could not be read (wrong field count, bad encoding).
    UnreadableRow,
    /// A 400 about the chat id.
    Rejected,
    /// The answer was bigger than the client reads.
    BodyTooLarge,
    /// An HTTP status the taxonomy does not expect.
    HttpError,
    /// A 200 whose body is not a JSON object.
    BadBody,
    /// 429 Too Many Requests.
    RateLimited,
    /// 5xx, 499, 408, 425.
    ServerError,
    /// The request timed out.
    Timeout,
    /// The connection could not be made.
    ConnectError,
    /// Any other network trouble (reset, cut-off body).
    NetworkError,
    /// 401, or a 200 with `{"code":401}`.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// A 3xx: the API URL redirects elsewhere.
    Redirected,
    /// A 400 about the instance (not authorized, expired, deleted, blocked).
    InstanceUnusable,
    /// A 400 saying the instance is starting.
    InstanceStarting,
    /// 466: the plan's monthly quota is used up.
    QuotaExhausted,
    /// Telegram: `checkAccount` found no account for the phone number or username.
    NoAccount,
}

impl Reason {
    /// The code stored in `failures.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidId => "invalid_id",
            Reason::UnreadableRow => "unreadable_row",
            Reason::Rejected => "rejected",
            Reason::BodyTooLarge => "body_too_large",
            Reason::HttpError => "http_error",
            Reason::BadBody => "bad_body",
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::Timeout => "timeout",
            Reason::ConnectError => "connect_error",
            Reason::NetworkError => "network_error",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::Redirected => "redirected",
            Reason::InstanceUnusable => "instance_unusable",
            Reason::InstanceStarting => "instance_starting",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::NoAccount => "no_account",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_serde_names() {
        for reason in [
            Reason::InvalidId,
            Reason::BodyTooLarge,
            Reason::QuotaExhausted,
            Reason::NoAccount,
        ] {
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{}\"", reason.as_str())
            );
        }
    }
}
