//! A local GREEN-API simulator for the demo, the tests and the benchmarks: the same URL shapes
//! and answers for WhatsApp and MAX, a strict per-instance rate limit answering 429, the
//! documented error answers, latency, and injected faults.
//!
//! It speaks plain HTTP/1.1 over TCP by hand, so that faults a real network produces (answers that
//! never come, resets mid-answer, truncated bodies) can be produced exactly.

pub mod data;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chat_id::Messenger;

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
    type Err = String;
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
                return Err(format!(
                    "unknown fault '{other}': timeout, reset, truncate, html, wrong-types, huge, server-error or mixed"
                ))
            }
        })
    }
}

/// One simulated instance.
#[derive(Debug, Clone)]
pub struct SandboxInstance {
    pub id: String,
    pub token: String,
    /// `authorized`, `notAuthorized`, `blocked`, `starting`, ...
    pub state: String,
}

impl SandboxInstance {
    pub fn authorized(id: &str, token: &str) -> Self {
        SandboxInstance {
            id: id.into(),
            token: token.into(),
            state: "authorized".into(),
        }
    }
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct Config {
    pub instances: Vec<SandboxInstance>,
    /// getContactInfo calls per second per instance; 0 is unlimited.
    pub rps: f64,
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// ± this fraction of the drawn latency.
    pub jitter: f64,
    pub fault: Option<Fault>,
    /// The share of chat ids (chosen by hash) that get the fault.
    pub fault_rate: f64,
    /// A faulty key fails its first this many attempts; 0 means every attempt.
    pub fault_attempts: u32,
    /// getContactInfo answers that succeed before 466 is answered.
    pub quota: Option<u64>,
    /// A `Retry-After` header (seconds) sent with each 429.
    pub retry_after: Option<u64>,
    /// An instance in state `starting` answers "starting" this many times, then is authorized.
    pub starting_calls: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            instances: default_instances(4),
            rps: 1.0,
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            jitter: 0.0,
            fault: None,
            fault_rate: 0.0,
            fault_attempts: 0,
            quota: None,
            retry_after: None,
            starting_calls: 3,
        }
    }
}

/// `count` authorized instances with ids 1101000001.. and tokens `sandbox-token-<id>`.
pub fn default_instances(count: usize) -> Vec<SandboxInstance> {
    (1..=count)
        .map(|i| {
            let id = format!("{}", 1_101_000_000 + i);
            let token = format!("sandbox-token-{id}");
            SandboxInstance::authorized(&id, &token)
        })
        .collect()
}

/// What the sandbox saw, for tests and benchmarks.
#[derive(Default)]
pub struct SandboxStats {
    pub requests: AtomicU64,
    pub contact_requests: AtomicU64,
    pub contact_answers: AtomicU64,
    pub http_429: AtomicU64,
    attempts_per_chat: Mutex<HashMap<String, u32>>,
    answers_per_chat: Mutex<HashMap<String, u32>>,
    arrivals: Mutex<Vec<String>>,
}

impl SandboxStats {
    /// The chat ids of getContactInfo calls, in order of arrival.
    pub fn arrivals(&self) -> Vec<String> {
        lock(&self.arrivals).clone()
    }

    /// How many 200 answers each chat id got.
    pub fn answers_per_chat(&self) -> HashMap<String, u32> {
        lock(&self.answers_per_chat).clone()
    }
}

struct State {
    config: Config,
    stats: Arc<SandboxStats>,
    last_accepted: Mutex<HashMap<(String, &'static str), Instant>>,
    calls_per_instance: Mutex<HashMap<String, u64>>,
}

/// A running sandbox.
pub struct Sandbox {
    pub addr: SocketAddr,
    pub stats: Arc<SandboxStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, the `GREEN_API_URL` to use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the sandbox on 127.0.0.1:`port` (0 picks a free port).
pub async fn start(config: Config, port: u16) -> std::io::Result<Sandbox> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(SandboxStats::default());
    let state = Arc::new(State {
        config,
        stats: stats.clone(),
        last_accepted: Mutex::new(HashMap::new()),
        calls_per_instance: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(stream, state.clone()));
        }
    });
    Ok(Sandbox { addr, stats, task })
}

/// The biggest request accepted (head and body).
const MAX_REQUEST: usize = 64 * 1024;

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some((request, used)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        buf.drain(..used);
        let arrived = Instant::now();
        let reply = answer(&state, &request, arrived);
        let delay = latency(&state.config);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if write_reply(&mut stream, reply).await.is_err() {
            return;
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Request, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(buf) {
            let content_length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if head_len + content_length > MAX_REQUEST {
                return None;
            }
            if buf.len() >= head_len + content_length {
                let request = Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    path: parsed.path.unwrap_or("").to_string(),
                    body: buf[head_len..head_len + content_length].to_vec(),
                };
                return Some((request, head_len + content_length));
            }
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What to send back.
enum Reply {
    Json(u16, String),
    Raw(u16, &'static str, String),
    /// Never answer.
    Hang,
    /// Send part of the head, then reset the connection.
    Reset,
    /// Announce the whole body, send half of it, close.
    Truncated(String),
    RateLimited(Option<u64>),
}

fn answer(state: &State, request: &Request, arrived: Instant) -> Reply {
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
        let (messenger, rest) = match path.strip_prefix("/v3/") {
            Some(rest) => (Messenger::Max, rest),
            None => (Messenger::Whatsapp, path.strip_prefix('/')?),
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
    let calls = {
        let mut calls = lock(&state.calls_per_instance);
        let n = calls.entry(instance.id.clone()).or_default();
        *n += 1;
        *n
    };
    match instance.state.as_str() {
        "authorized" => {}
        "starting" if calls <= state.config.starting_calls => {
            return Reply::Json(
                400,
                json!({"message": "instance in starting process try later"}).to_string(),
            )
        }
        "starting" => {}
        "blocked" => {
            return Reply::Json(400, json!({"message": "Instance is blocked"}).to_string())
        }
        _ => {
            return Reply::Json(
                400,
                json!({"message": "instance account not authorized"}).to_string(),
            )
        }
    }
    let chat_id = match serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("chatId").cloned())
    {
        Some(serde_json::Value::String(id)) => id,
        Some(_) => {
            return Reply::Json(
                500,
                json!({"message": "interface conversion: interface {} is bool, not string"})
                    .to_string(),
            )
        }
        None => return validation_failed("empty body or no chatId"),
    };
    if let Err(details) = check_chat_id(&chat_id, route.messenger) {
        return validation_failed(details);
    }
    lock(&stats.arrivals).push(chat_id.clone());
    let attempt = {
        let mut attempts = lock(&stats.attempts_per_chat);
        let n = attempts.entry(chat_id.clone()).or_default();
        *n += 1;
        *n
    };
    let reply = match fault_for(&state.config, &chat_id, attempt) {
        Some(fault) => faulty_reply(fault, &chat_id, route.messenger, attempt),
        None => Reply::Json(200, data::contact(&chat_id, route.messenger).to_string()),
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
        Messenger::Max => {
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
    if state.config.rps <= 0.0 {
        return true;
    }
    let interval = Duration::from_secs_f64(1.0 / state.config.rps);
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

fn fault_for(config: &Config, chat_id: &str, attempt: u32) -> Option<Fault> {
    let fault = config.fault?;
    let share = (data::stable_hash(chat_id) % 10_000) as f64 / 10_000.0;
    let chosen = share < config.fault_rate;
    let still_failing = config.fault_attempts == 0 || attempt <= config.fault_attempts;
    (chosen && still_failing).then_some(fault)
}

fn faulty_reply(fault: Fault, chat_id: &str, messenger: Messenger, attempt: u32) -> Reply {
    let body = data::contact(chat_id, messenger);
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

fn latency(config: &Config) -> Duration {
    if config.latency_max.is_zero() {
        return Duration::ZERO;
    }
    let min = config.latency_min.as_secs_f64();
    let max = config.latency_max.as_secs_f64().max(min);
    let base = min + fastrand::f64() * (max - min);
    let jitter = 1.0 + config.jitter * (fastrand::f64() * 2.0 - 1.0);
    Duration::from_secs_f64((base * jitter).max(0.0))
}

async fn write_reply(stream: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Json(status, body) => {
            write_full(stream, status, "application/json", &body, None).await
        }
        Reply::Raw(status, content_type, body) => {
            write_full(stream, status, content_type, &body, None).await
        }
        Reply::RateLimited(retry_after) => {
            let body = json!({"message": "Too Many Requests"}).to_string();
            write_full(stream, 429, "application/json", &body, retry_after).await
        }
        Reply::Hang => {
            // Hold the connection open without answering until the client gives up.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
        Reply::Reset => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                .await?;
            stream.set_zero_linger()?;
            Err(std::io::ErrorKind::ConnectionReset.into())
        }
        Reply::Truncated(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body.as_bytes()[..body.len() / 2]).await?;
            stream.flush().await?;
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }
    }
}

async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    retry_after: Option<u64>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        466 => "Quota Exceeded",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let retry = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}; charset=utf-8\r\nContent-Length: {}\r\n{retry}\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
