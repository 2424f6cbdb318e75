//! The error taxonomy: what one HTTP answer means for the key and for the run (pure). A body is
//! parsed here once; a usable answer is handed on parsed.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::reason::Reason;

/// What the job should do after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// A usable answer.
    Answer(Answer),
    /// Worth another attempt later: network trouble, 429, 5xx, a bad body.
    Transient(Problem),
    /// This key can never succeed in this run (a 400 about the chat id).
    KeyRejected(Problem),
    /// The instance is restarting: wait, then try again; the key is not at fault.
    InstanceStarting(Problem),
    /// Every further call on this instance fails the same way: take it out of the pool.
    InstanceUnusable(Problem),
    /// The plan's monthly quota is used up (466): nothing more can succeed this period.
    QuotaExhausted(Problem),
}

impl Verdict {
    /// The problem, unless the answer is usable.
    pub(crate) fn problem(&self) -> Option<&Problem> {
        match self {
            Verdict::Answer(_) => None,
            Verdict::Transient(p)
            | Verdict::KeyRejected(p)
            | Verdict::InstanceStarting(p)
            | Verdict::InstanceUnusable(p)
            | Verdict::QuotaExhausted(p) => Some(p),
        }
    }
}

/// A 200 answer whose body is a JSON object: the object, and the body as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) object: Map<String, Value>,
    pub(crate) raw: String,
}

impl Answer {
    /// The body as an answer, if it is a JSON object.
    pub(crate) fn parse(body: &str) -> Option<Answer> {
        match serde_json::from_str(body) {
            Ok(Value::Object(object)) => Some(Answer {
                object,
                raw: body.to_string(),
            }),
            _ => None,
        }
    }
}

/// What Telegram's `checkAccount` answered: the account's chat id, or that there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Account {
    /// The account's chat id (the user id, digits).
    Exists(String),
    /// No Telegram account has this phone number or username.
    Missing,
}

impl Answer {
    /// This answer as `checkAccount`'s; a problem when it says neither clearly.
    pub(crate) fn account(&self) -> Result<Account, Problem> {
        let exist = match self.object.get("exist") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let chat_id = match self.object.get("chatId") {
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let valid =
            |id: &str| !id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit());
        match (exist, chat_id) {
            (Some(false), _) => Ok(Account::Missing),
            (Some(true), Some(id)) if valid(&id) => Ok(Account::Exists(id)),
            _ => Err(Problem::new(
                Reason::BadBody,
                Some(200),
                "checkAccount answered without a clear exist and personal chatId",
            )),
        }
    }
}

/// A failure's reason (stored in `failures.reason`), status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) reason: Reason,
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl Problem {
    pub(crate) fn new(reason: Reason, status: Option<u16>, message: impl Into<String>) -> Self {
        Problem {
            reason,
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The longest body excerpt kept in a message.
const EXCERPT_CHARS: usize = 200;

/// A short single-line excerpt of a body, for messages.
pub(crate) fn excerpt(body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Classifies an HTTP answer by status and body.
pub(crate) fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Verdict {
    let problem = |reason, message: String| Problem {
        reason,
        status: Some(status),
        message,
        retry_after,
    };
    match status {
        200 => answered(body, problem),
        400 => bad_request(body, problem),
        401 => Verdict::InstanceUnusable(problem(
            Reason::Unauthorized,
            "401 Unauthorized: the instance token is wrong".into(),
        )),
        403 => Verdict::InstanceUnusable(problem(
            Reason::Forbidden,
            "403 Forbidden: the instance id is wrong or does not belong to this API URL".into(),
        )),
        404 => Verdict::InstanceUnusable(problem(
            Reason::NotFound,
            "404 Not Found: check GREEN_API_URL (the API answered that the path does not exist)"
                .into(),
        )),
        466 => Verdict::QuotaExhausted(problem(
            Reason::QuotaExhausted,
            "466: the plan's monthly quota is used up; it resets with the plan period, and the next run resumes where this one stopped".into(),
        )),
        429 => Verdict::Transient(problem(Reason::RateLimited, "429 Too Many Requests".into())),
        408 | 425 | 499 | 500..=599 => Verdict::Transient(problem(
            Reason::ServerError,
            format!("HTTP {status}: {}", excerpt(body)),
        )),
        _ => Verdict::KeyRejected(problem(
            Reason::HttpError,
            format!("unexpected HTTP {status}: {}", excerpt(body)),
        )),
    }
}

/// A 200: the answer, unless its body is not a JSON object or says 401 inside.
fn answered(body: &str, problem: impl Fn(Reason, String) -> Problem) -> Verdict {
    let Some(answer) = Answer::parse(body) else {
        return Verdict::Transient(problem(
            Reason::BadBody,
            format!(
                "HTTP 200 with a body that is not a JSON object: {}",
                excerpt(body)
            ),
        ));
    };
    if answer.object.get("code").and_then(Value::as_i64) == Some(401) {
        return Verdict::InstanceUnusable(problem(
            Reason::Unauthorized,
            "the API answered 401 Unauthorized inside a 200: check the instance token".into(),
        ));
    }
    Verdict::Answer(answer)
}

/// A 400: the instance is starting, or cannot be used, or the key is rejected.
fn bad_request(body: &str, problem: impl Fn(Reason, String) -> Problem) -> Verdict {
    let lower = body.to_ascii_lowercase();
    if lower.contains("starting") {
        return Verdict::InstanceStarting(problem(
            Reason::InstanceStarting,
            "the instance is starting; waiting for it".into(),
        ));
    }
    if about_the_instance(&lower) {
        return Verdict::InstanceUnusable(problem(
            Reason::InstanceUnusable,
            format!("the instance cannot be used: {}", excerpt(body)),
        ));
    }
    Verdict::KeyRejected(problem(
        Reason::Rejected,
        format!("the API rejected this chat id: {}", excerpt(body)),
    ))
}

/// A 400 body (lower case) that says the instance cannot be used: it names the instance or its
/// account and why (not authorized, expired, deleted, blocked). A validation failure is about the
/// chat id, whatever words its details use ("the contact is blocked").
fn about_the_instance(lower: &str) -> bool {
    if lower.contains("validation failed") {
        return false;
    }
    let names_it = lower.contains("instance") || lower.contains("account");
    names_it
        && [
            "not authorized",
            "notauthorized",
            "expired",
            "deleted",
            "blocked",
        ]
        .iter()
        .any(|why| lower.contains(why))
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(v: &Verdict) -> &'static str {
        v.problem().map_or("answer", |p| p.reason.as_str())
    }

    #[test]
    fn check_account_answers() {
        let account = |body: &str| Answer::parse(body).unwrap().account();
        let exists = Account::Exists("10000000".into());
        assert_eq!(
            account(r#"{"exist":true,"chatId":"10000000"}"#),
            Ok(exists.clone())
        );
        assert_eq!(account(r#"{"exist":"true","chatId":10000000}"#), Ok(exists));
        assert_eq!(account(r#"{"exist":false}"#), Ok(Account::Missing));
        assert_eq!(
            account(r#"{"exist":false,"chatId":""}"#),
            Ok(Account::Missing)
        );
        for unclear in [
            r#"{"exist":true}"#,
            r#"{"exist":true,"chatId":"-100"}"#,
            "{}",
        ] {
            assert_eq!(
                account(unclear).unwrap_err().reason,
                Reason::BadBody,
                "{unclear}"
            );
        }
    }

    #[test]
    fn statuses_map_to_the_taxonomy() {
        let c = |s, b| classify(s, b, None);
        assert_eq!(reason(&c(200, r#"{"name":"x"}"#)), "answer");
        assert!(matches!(c(200, "<html>"), Verdict::Transient(_)));
        assert!(matches!(c(200, r#"{"name":"#), Verdict::Transient(_)));
        assert!(matches!(
            c(200, r#"{"code":401,"description":"Unauthorized"}"#),
            Verdict::InstanceUnusable(_)
        ));
        assert!(matches!(
            c(400, "Validation failed. Details: bad chatId"),
            Verdict::KeyRejected(_)
        ));
        assert!(matches!(
            c(400, "instance in starting process try later"),
            Verdict::InstanceStarting(_)
        ));
        assert!(matches!(
            c(400, "instance account not authorized"),
            Verdict::InstanceUnusable(_)
        ));
        assert!(matches!(
            c(400, "Instance is deleted"),
            Verdict::InstanceUnusable(_)
        ));
        for s in [401, 403, 404] {
            assert!(matches!(c(s, ""), Verdict::InstanceUnusable(_)), "{s}");
        }
        assert!(matches!(c(466, "{}"), Verdict::QuotaExhausted(_)));
        for s in [429, 499, 500, 502, 503] {
            assert!(matches!(c(s, ""), Verdict::Transient(_)), "{s}");
        }
        assert_eq!(reason(&c(429, "")), "rate_limited");
        assert_eq!(reason(&c(418, "")), "http_error");
    }

    #[test]
    fn only_answers_about_the_instance_take_it_out() {
        let c = |b| classify(400, b, None);
        for body in [
            "Validation failed. Details: chatId 79001234567@c.us is blocked",
            "Validation failed. Details: the contact was deleted",
            "Validation failed. Details: link expired",
            "the chat is blocked",
            "message deleted",
        ] {
            assert!(matches!(c(body), Verdict::KeyRejected(_)), "{body}");
        }
        for body in [
            "instance account not authorized",
            "Instance is deleted",
            "Instance is blocked",
            "the instance has expired",
            r#"{"message":"instance account expired"}"#,
        ] {
            assert!(matches!(c(body), Verdict::InstanceUnusable(_)), "{body}");
        }
    }

    #[test]
    fn bodies_that_are_not_objects_are_rejected() {
        for body in ["", "<html>", "[]", "null", r#"{"name":"#] {
            assert!(Answer::parse(body).is_none(), "{body}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        let long = "x".repeat(1000);
        assert!(excerpt(&long).chars().count() <= EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\n b"), "a b");
    }
}
