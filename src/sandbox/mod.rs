//! A local GREEN-API simulator for the demo, the tests and the benchmarks: the same URL shapes
//! and answers for WhatsApp, MAX and Telegram (with its `checkAccount`), a strict per-instance
//! rate limit answering 429, the documented error answers, latency, and injected faults.
//!
//! `http` speaks HTTP/1.1 by hand, `rules` plays the API, `faults` breaks answers on purpose, and
//! `data` makes the contacts; this module configures and serves them.

mod data;
mod faults;
mod http;
mod rules;
mod world;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::config::InvalidValue;
use crate::domain::Rate;
pub use faults::Fault;
use rules::State;
pub use world::{ChangeRate, ChangeRates, World};

/// One simulated instance.
#[derive(Debug, Clone)]
pub struct SandboxInstance {
    /// The idInstance.
    pub id: String,
    /// Its token.
    pub token: String,
    /// `authorized`, `notAuthorized`, `blocked`, `starting`, ...
    pub state: String,
}

impl SandboxInstance {
    /// An authorized instance.
    pub fn authorized(id: &str, token: &str) -> Self {
        SandboxInstance {
            id: id.into(),
            token: token.into(),
            state: "authorized".into(),
        }
    }
}

impl std::str::FromStr for SandboxInstance {
    type Err = InvalidValue;

    /// `id:token[:state]` (the state is `authorized` when left out).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut parts = spec.trim().splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(token), state) if !id.is_empty() && !token.is_empty() => {
                Ok(SandboxInstance {
                    id: id.into(),
                    token: token.into(),
                    state: state.unwrap_or("authorized").into(),
                })
            }
            _ => Err(InvalidValue(format!("'{spec}' is not id:token[:state]"))),
        }
    }
}

/// A range of latencies in milliseconds, written `100-200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyRange {
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
}

impl std::str::FromStr for LatencyRange {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .map(|(min, max)| LatencyRange {
                min: Duration::from_millis(min),
                max: Duration::from_millis(max),
            })
            .ok_or_else(|| InvalidValue(format!("'{text}' must look like 100-200")))
    }
}

/// How the sandbox behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The instances it serves.
    pub instances: Vec<SandboxInstance>,
    /// getContactInfo calls per second per instance.
    pub rate: Rate,
    /// The shortest latency.
    pub latency_min: Duration,
    /// The longest latency.
    pub latency_max: Duration,
    /// ± this fraction of the drawn latency.
    pub jitter: f64,
    /// Each request waits a random 0..this long before the rate limiter sees it, as a network
    /// path moves arrival times.
    pub arrival_jitter: Duration,
    /// A fault to inject.
    pub fault: Option<Fault>,
    /// The share of chat ids (chosen by hash) that get the fault.
    pub fault_rate: f64,
    /// A faulty key fails its first this many attempts; 0 means every attempt.
    pub fault_attempts: u32,
    /// getContactInfo answers that succeed before 466 is answered.
    pub quota: Option<u64>,
    /// Telegram checkAccount calls per instance before 466 is answered.
    pub check_quota: Option<u64>,
    /// A `Retry-After` header (seconds) sent with each 429.
    pub retry_after: Option<u64>,
    /// An instance in state `starting` answers "starting" this many times, then is authorized.
    pub starting_calls: u64,
    /// How often the contacts change (none by default).
    pub change_rates: ChangeRates,
    /// The seed of the contacts' changes.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            instances: default_instances(4),
            rate: Rate::PerSecond(1.0),
            latency_min: Duration::ZERO,
            latency_max: Duration::ZERO,
            jitter: 0.0,
            arrival_jitter: Duration::ZERO,
            fault: None,
            fault_rate: 0.0,
            fault_attempts: 0,
            quota: None,
            check_quota: None,
            retry_after: None,
            starting_calls: 3,
            change_rates: ChangeRates::default(),
            seed: 1,
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
    /// Every request.
    pub requests: AtomicU64,
    /// getContactInfo requests, refused or not.
    pub contact_requests: AtomicU64,
    /// getContactInfo answers with a contact (200).
    pub contact_answers: AtomicU64,
    /// Requests refused with 429.
    pub http_429: AtomicU64,
    /// Telegram checkAccount requests, refused or not.
    pub check_requests: AtomicU64,
    checks_per_handle: Mutex<HashMap<String, u32>>,
    attempts_per_chat: Mutex<HashMap<String, u32>>,
    answers_per_chat: Mutex<HashMap<String, u32>>,
    arrivals: Mutex<Vec<String>>,
}

impl SandboxStats {
    /// The chat ids of getContactInfo calls, in order of arrival.
    pub fn arrivals(&self) -> Vec<String> {
        lock(&self.arrivals).clone()
    }

    /// How many checkAccount answers each phone number (`+digits`) or `@username` got.
    pub fn checks_per_handle(&self) -> HashMap<String, u32> {
        lock(&self.checks_per_handle).clone()
    }

    /// How many 200 answers each chat id got.
    pub fn answers_per_chat(&self) -> HashMap<String, u32> {
        lock(&self.answers_per_chat).clone()
    }
}

/// A running sandbox; it stops when dropped.
pub struct Sandbox {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub stats: Arc<SandboxStats>,
    /// Its contacts' changes, and its clock.
    pub world: Arc<World>,
    instances: Vec<SandboxInstance>,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, the `GREEN_API_URL` to use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `GREEN_API_URL` of its Telegram instances: [`Sandbox::url`] with the `/tgm` prefix
    /// one of GREEN-API's SDKs uses.
    pub fn telegram_url(&self) -> String {
        format!("{}/tgm", self.url())
    }

    /// The instances it serves.
    pub fn config_instances(&self) -> &[SandboxInstance] {
        &self.instances
    }

    /// Its instances as `GREEN_API_INSTANCES` wants them: `id:token,id:token`.
    pub fn credentials(&self) -> String {
        self.instances
            .iter()
            .map(|i| format!("{}:{}", i.id, i.token))
            .collect::<Vec<_>>()
            .join(",")
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
    let instances = config.instances.clone();
    let world = Arc::new(World::new(
        config.change_rates.clone(),
        config.seed,
        chrono::Utc::now(),
    ));
    let state = Arc::new(State {
        world: world.clone(),
        config,
        stats: stats.clone(),
        last_accepted: Mutex::new(HashMap::new()),
        calls_per_instance: Mutex::new(HashMap::new()),
        checks_per_instance: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(stream, state.clone()));
        }
    });
    Ok(Sandbox {
        addr,
        stats,
        world,
        instances,
        task,
    })
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some((request, used)) = http::read_request(&mut stream, &mut buf).await else {
            return;
        };
        buf.drain(..used);
        if !state.config.arrival_jitter.is_zero() {
            tokio::time::sleep(state.config.arrival_jitter.mul_f64(fastrand::f64())).await;
        }
        let arrived = Instant::now();
        let reply = rules::answer(&state, &request, arrived);
        let delay = latency(&state.config);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if http::write_reply(&mut stream, reply).await.is_err() {
            return;
        }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
