//! Faults the sandbox injects into some answers, chosen by a stable hash of the chat id.

use std::str::FromStr;

use serde_json::json;

use super::data;
use super::http::Reply;
use super::Config;
use crate::chat_id::Messenger;
use crate::config::InvalidValue;

/// A fault the sandbox injects into some answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The answer never comes.
    Timeout,
    /// The connection is reset mid-answer.
    Reset,
    /// The JSON body is cut in half.
    Truncate,
    /// A 200 with an HTML page.
    Html,
    /// Wrong JSON types in fields.
    WrongTypes,
    /// A body of several megabytes.
    Huge,
    /// 500, 502 and 503 answers.
    ServerError,
    /// 5xx answers and resets, alternating.
    Mixed,
}

impl FromStr for Fault {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "timeout" => Fault::Timeout,
            "reset" => Fault::Reset,
            "truncate" => Fault::Truncate,
            "html" => Fault::Html,
            "wrong-types" => Fault::WrongTypes,
            "huge" => Fault::Huge,
            "server-error" => Fault::ServerError,
            "mixed" => Fault::Mixed,
            other => {
                return Err(InvalidValue(format!(
                    "unknown fault '{other}': timeout, reset, truncate, html, wrong-types, huge, server-error or mixed"
                )))
            }
        })
    }
}

pub(super) fn fault_for(config: &Config, chat_id: &str, attempt: u32) -> Option<Fault> {
    let fault = config.fault?;
    let share = (data::stable_hash(chat_id) % 10_000) as f64 / 10_000.0;
    let chosen = share < config.fault_rate;
    let still_failing = config.fault_attempts == 0 || attempt <= config.fault_attempts;
    (chosen && still_failing).then_some(fault)
}

pub(super) fn faulty_reply(
    fault: Fault,
    chat_id: &str,
    messenger: Messenger,
    attempt: u32,
) -> Reply {
    let body = data::contact(chat_id, messenger, 0);
    match fault {
        Fault::Timeout => Reply::Hang,
        Fault::Reset => Reply::Reset,
        Fault::Truncate => Reply::Truncated(body.to_string()),
        Fault::Html => Reply::Raw(
            200,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>".into(),
        ),
        Fault::WrongTypes => Reply::Json(200, data::with_wrong_types(body).to_string()),
        Fault::Huge => {
            let mut huge = body;
            huge["description"] = json!("x".repeat(3 * 1024 * 1024));
            Reply::Json(200, huge.to_string())
        }
        Fault::ServerError => {
            let status = [500, 502, 503][(attempt as usize) % 3];
            Reply::Json(
                status,
                json!({"message": "Internal Server Error"}).to_string(),
            )
        }
        Fault::Mixed => match (data::stable_hash(chat_id) + u64::from(attempt)) % 3 {
            0 => Reply::Reset,
            1 => Reply::Json(502, "<html>Bad Gateway</html>".into()),
            _ => Reply::Json(500, json!({"message": "Internal Server Error"}).to_string()),
        },
    }
}
