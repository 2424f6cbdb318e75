//! The API's rules as the sandbox plays them: routes for the three flavours, tokens, instance
//! states, chat id validation, Telegram's checkAccount, the strict per-instance rate limit (429)
//! and the monthly quotas (466).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::faults::{fault_for, faulty_reply};
use super::http::{Reply, Request};
use super::{data, lock, Config, SandboxInstance, SandboxStats, World};
use crate::chat_id::Messenger;

/// What the rules remember between requests.
pub(super) struct State {
    pub(super) config: Config,
    pub(super) world: Arc<World>,
    pub(super) stats: Arc<SandboxStats>,
    pub(super) last_accepted: Mutex<HashMap<(String, &'static str), Instant>>,
    pub(super) calls_per_instance: Mutex<HashMap<String, u64>>,
    pub(super) checks_per_instance: Mutex<HashMap<String, u64>>,
}

/// The answer to one request that arrived at `arrived`.
pub(super) fn answer(state: &State, request: &Request, arrived: Instant) -> Reply {
    state.stats.requests.fetch_add(1, Relaxed);
    let Some(route) = Route::parse(&request.path) else {
        return Reply::Json(404, json!({"message": "Not Found"}).to_string());
    };
    let Some(instance) = state
        .config
        .instances
        .iter()
        .find(|i| i.id == route.instance)
    else {
        return Reply::Json(403, json!({"message": "Forbidden"}).to_string());
    };
    if instance.token != route.token {
        return Reply::Json(401, json!({"message": "Unauthorized"}).to_string());
    }
    match (request.method.as_str(), route.method.as_str()) {
        ("GET", "getStateInstance") => {
            Reply::Json(200, json!({"stateInstance": instance.state}).to_string())
        }
        ("POST", "getContactInfo") => contact_info(state, instance, &route, &request.body, arrived),
        ("POST", "checkAccount") if route.messenger == Messenger::Telegram => {
            check_account(state, instance, &request.body, arrived)
        }
        _ => Reply::Json(404, json!({"message": "Not Found"}).to_string()),
    }
}

struct Route {
    messenger: Messenger,
    instance: String,
    method: String,
    token: String,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        // Telegram instances are served under `/tgm` (GREEN_API_URL carries the prefix).
        let (messenger, rest) = match (path.strip_prefix("/v3/"), path.strip_prefix("/tgm/")) {
            (Some(rest), _) => (Messenger::Max, rest),
            (_, Some(rest)) => (Messenger::Telegram, rest),
            _ => (Messenger::Whatsapp, path.strip_prefix('/')?),
        };
        let mut parts = rest.split('/');
        let instance = parts.next()?.strip_prefix("waInstance")?.to_string();
        let method = parts.next()?.to_string();
        let token = parts.next()?.to_string();
        if parts.next().is_some() {
            return None;
        }
        Some(Route {
            messenger,
            instance,
            method,
            token,
        })
    }
}

fn contact_info(
    state: &State,
    instance: &SandboxInstance,
    route: &Route,
    body: &[u8],
    arrived: Instant,
) -> Reply {
    let stats = &state.stats;
    stats.contact_requests.fetch_add(1, Relaxed);
    if !rate_allows(state, &instance.id, "getContactInfo", arrived) {
        stats.http_429.fetch_add(1, Relaxed);
        return Reply::RateLimited(state.config.retry_after);
    }
    let calls = count(&state.calls_per_instance, &instance.id);
    if let Some(refused) = instance_refusal(state, instance, calls) {
        return refused;
    }
    let chat_id = match requested_chat_id(body, route.messenger) {
        Ok(chat_id) => chat_id,
        Err(refused) => return refused,
    };
    lock(&stats.arrivals).push(chat_id.clone());
    let attempt = count(&stats.attempts_per_chat, &chat_id);
    let reply = match fault_for(&state.config, &chat_id, attempt) {
        Some(fault) => faulty_reply(fault, &chat_id, route.messenger, attempt),
        None => {
            let edition = state.world.edition(&chat_id, state.world.now());
            Reply::Json(
                200,
                data::contact(&chat_id, route.messenger, edition).to_string(),
            )
        }
    };
    if matches!(reply, Reply::Json(200, _)) {
        // Counting and checking the quota in one step, so concurrent calls cannot overshoot it.
        let quota = state.config.quota.unwrap_or(u64::MAX);
        let counted = stats
            .contact_answers
            .fetch_update(Relaxed, Relaxed, |n| (n < quota).then_some(n + 1));
        if counted.is_err() {
            return Reply::Json(
                466,
                json!({"invokeStatus": {"method": "getContactInfo", "used": quota, "total": quota,
                        "status": "QUOTE_ALLOWED_EXCEEDED"}})
                .to_string(),
            );
        }
        *lock(&stats.answers_per_chat).entry(chat_id).or_default() += 1;
    }
    reply
}

/// The answer to one `checkAccount` call of `instance` with `body`.
fn check_account(
    state: &State,
    instance: &SandboxInstance,
    body: &[u8],
    arrived: Instant,
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
    Reply::Json(200, data::account(&handle).to_string())
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

/// Adds one to `key`'s count in `counts`; the new count.
fn count<N: Copy + Default + std::ops::AddAssign + From<u8>>(
    counts: &Mutex<HashMap<String, N>>,
    key: &str,
) -> N {
    let mut counts = lock(counts);
    let n = counts.entry(key.to_string()).or_default();
    *n += N::from(1);
    *n
}

/// What an instance that cannot answer yet (`calls` so far) answers instead, as GREEN-API does.
fn instance_refusal(state: &State, instance: &SandboxInstance, calls: u64) -> Option<Reply> {
    let message = match instance.state.as_str() {
        "authorized" => return None,
        "starting" if calls <= state.config.starting_calls => {
            "instance in starting process try later"
        }
        "starting" => return None,
        "blocked" => "Instance is blocked",
        _ => "instance account not authorized",
    };
    Some(Reply::Json(400, json!({ "message": message }).to_string()))
}

/// The request's chat id, or GREEN-API's answer to a body without a valid one.
fn requested_chat_id(body: &[u8], messenger: Messenger) -> Result<String, Reply> {
    let chat_id = match serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("chatId").cloned())
    {
        Some(serde_json::Value::String(id)) => id,
        Some(_) => {
            return Err(Reply::Json(
                500,
                json!({"message": "interface conversion: interface {} is bool, not string"})
                    .to_string(),
            ))
        }
        None => return Err(validation_failed("empty body or no chatId")),
    };
    check_chat_id(&chat_id, messenger).map_err(validation_failed)?;
    Ok(chat_id)
}

fn validation_failed(details: &str) -> Reply {
    Reply::Json(
        400,
        json!({"message": format!("Validation failed. Details: {details}")}).to_string(),
    )
}

fn check_chat_id(chat_id: &str, messenger: Messenger) -> Result<(), &'static str> {
    match messenger {
        Messenger::Whatsapp => {
            if chat_id.ends_with("@g.us") {
                return Err("The method GetContactInfo does not support group chats, to work with groups, use the GetGroupData method");
            }
            let digits = chat_id
                .strip_suffix("@c.us")
                .ok_or("chatId must end with @c.us")?;
            if digits.len() < 7 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err("chatId is invalid");
            }
        }
        Messenger::Max | Messenger::Telegram => {
            if chat_id.starts_with('-') {
                return Err("The method GetContactInfo does not support group chats, to work with groups, use the GetGroupData method");
            }
            if chat_id.is_empty() || !chat_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err("chatId is invalid");
            }
        }
    }
    // Ids ending in 0000 are numbers with no account that the API refuses.
    if chat_id.trim_end_matches("@c.us").ends_with("0000") {
        return Err("chatId is invalid");
    }
    Ok(())
}

/// Strict enforcement: a call arriving sooner than 1/rps after the last accepted one is refused.
fn rate_allows(state: &State, instance: &str, method: &'static str, arrived: Instant) -> bool {
    let Some(interval) = state.config.rate.interval() else {
        return true;
    };
    let mut last = lock(&state.last_accepted);
    let key = (instance.to_string(), method);
    if let Some(previous) = last.get(&key) {
        if arrived.saturating_duration_since(*previous) < interval {
            return false;
        }
    }
    last.insert(key, arrived);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_for_both_flavours() {
        let wa = Route::parse("/waInstance7/getContactInfo/tok").unwrap();
        assert_eq!(
            (wa.messenger, wa.instance.as_str(), wa.method.as_str()),
            (Messenger::Whatsapp, "7", "getContactInfo")
        );
        let max = Route::parse("/v3/waInstance7/getContactInfo/tok").unwrap();
        assert_eq!(max.messenger, Messenger::Max);
        assert!(Route::parse("/waInstance7/getContactInfo").is_none());
        assert!(Route::parse("/other").is_none());
    }

    #[test]
    fn chat_ids_are_checked_like_the_api() {
        assert!(check_chat_id("79001234567@c.us", Messenger::Whatsapp).is_ok());
        assert!(check_chat_id("120363@g.us", Messenger::Whatsapp).is_err());
        assert!(check_chat_id("79001230000@c.us", Messenger::Whatsapp).is_err());
        assert!(check_chat_id("-100", Messenger::Max).is_err());
        assert!(check_chat_id("10000001", Messenger::Max).is_ok());
    }
}
