//! Telegram's `checkAccount` as the sandbox plays it: which phone numbers and usernames have an
//! account (most, chosen by hash), the account's user id, and the monthly quota (466).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use super::data::stable_hash;
use super::http::Reply;
use super::rules::{count, rate_allows, validation_failed, State};
use super::{lock, SandboxInstance};

/// The answer to one `checkAccount` call of `instance` with `body`.
pub(super) fn check_account(
    state: &State,
    instance: &SandboxInstance,
    body: &[u8],
    arrived: std::time::Instant,
) -> Reply {
    let stats = &state.stats;
    stats.check_requests.fetch_add(1, Relaxed);
    if !rate_allows(state, &instance.id, "checkAccount", arrived) {
        stats.http_429.fetch_add(1, Relaxed);
        return Reply::RateLimited(state.config.retry_after);
    }
    let Some(handle) = requested_handle(body) else {
        return validation_failed(
            "phoneNumber (an integer) or username (starting with @) is required",
        );
    };
    let checks = count(&state.checks_per_instance, &instance.id);
    if checks > state.config.check_quota.unwrap_or(u64::MAX) {
        return Reply::Json(
            466,
            json!({"invokeStatus": {"method": "checkAccount", "status": "QUOTE_ALLOWED_EXCEEDED"}})
                .to_string(),
        );
    }
    *lock(&stats.checks_per_handle)
        .entry(handle.clone())
        .or_default() += 1;
    Reply::Json(200, account(&handle).to_string())
}

/// `+digits` for a phone number, `@name` for a username, as the body names it.
fn requested_handle(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    match (body.get("phoneNumber"), body.get("username")) {
        (Some(Value::Number(n)), _) => n.as_u64().map(|n| format!("+{n}")),
        (_, Some(Value::String(name))) if name.starts_with('@') => Some(name.to_lowercase()),
        _ => None,
    }
}

/// What `checkAccount` answers for `handle`: four in five have an account, with a stable id.
pub(super) fn account(handle: &str) -> Value {
    let hash = stable_hash(handle);
    if hash.is_multiple_of(5) {
        return json!({"exist": false, "chatId": ""});
    }
    json!({"exist": true, "chatId": (100_000_000 + hash % 8_900_000_000).to_string()})
}
