//! The fetcher: one dispatcher per instance pulls keys from a shared queue at its own pace, so N
//! instances give N times the throughput, and requests overlap so latency does not lower the rate.
//! Retries go back into the queue after a backoff and are paced like any call; run-stopping
//! answers take an instance out of the pool or stop the run.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};

use crate::api::pacer::Pacer;
use crate::api::{Client, Instance, Problem, Verdict};
use crate::chat_id::Messenger;
use crate::normalise::{self, format_time};
use crate::stats::Stats;
use crate::store::writer::{FailedKey, KeyOutcome};

/// How the fetcher paces and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    pub messenger: Messenger,
    pub rps_per_instance: f64,
    pub pacing_margin: f64,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub retry_after_cap: Duration,
    /// How long an instance that answers "starting" is waited for before it is left out.
    pub starting_wait: Duration,
    /// When a key that failed for a transient reason is due again.
    pub transient_retry_after: Duration,
    pub max_calls: Option<u64>,
}

/// Why a run stopped before every due key had an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The plan's quota is used up (466).
    Quota(String),
    /// No usable instance is left.
    NoInstances(String),
    /// SIGINT or SIGTERM.
    Interrupted,
    /// `--max-calls` reached.
    Budget,
    /// `--deadline` reached.
    Deadline,
    /// The store cannot take more writes.
    Store(String),
}

/// A shared stop switch: the first reason given wins.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<Option<StopReason>>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(None).0))
    }
}

impl Stop {
    pub fn trigger(&self, reason: StopReason) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.0.borrow().clone()
    }

    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

/// A key on its way through the fetcher.
#[derive(Debug, Clone)]
pub struct Job {
    pub chat_id: String,
    pub phone: Option<String>,
    attempts: u32,
}

impl Job {
    pub fn new(chat_id: String, phone: Option<String>) -> Job {
        Job {
            chat_id,
            phone,
            attempts: 0,
        }
    }
}

/// The queue the planner feeds and the dispatchers drain.
pub struct Queue {
    fresh_tx: async_channel::Sender<Job>,
    fresh_rx: async_channel::Receiver<Job>,
    retry_tx: async_channel::Sender<Job>,
    retry_rx: async_channel::Receiver<Job>,
    /// Keys given to the fetcher that have no final outcome yet.
    outstanding: AtomicUsize,
    feeding_done: AtomicBool,
}

impl Queue {
    pub fn new(capacity: usize) -> Arc<Queue> {
        let (fresh_tx, fresh_rx) = async_channel::bounded(capacity);
        let (retry_tx, retry_rx) = async_channel::unbounded();
        Arc::new(Queue {
            fresh_tx,
            fresh_rx,
            retry_tx,
            retry_rx,
            outstanding: AtomicUsize::new(0),
            feeding_done: AtomicBool::new(false),
        })
    }

    /// Adds a key; false when the fetcher has stopped taking keys.
    pub async fn push(&self, job: Job) -> bool {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        if self.fresh_tx.send(job).await.is_err() {
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// No more keys will be pushed.
    pub fn finish_feeding(&self) {
        self.feeding_done.store(true, Ordering::SeqCst);
        self.close_if_drained();
    }

    /// A key left the fetcher (with an outcome, or dropped because the run stopped).
    fn settle(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.close_if_drained();
    }

    fn close_if_drained(&self) {
        if self.feeding_done.load(Ordering::SeqCst) && self.outstanding.load(Ordering::SeqCst) == 0
        {
            self.close();
        }
    }

    fn close(&self) {
        self.fresh_tx.close();
        self.retry_tx.close();
    }

    async fn next(&self) -> Option<Job> {
        if let Ok(job) = self.retry_rx.try_recv() {
            return Some(job);
        }
        tokio::select! {
            biased;
            job = self.retry_rx.recv() => job.ok(),
            job = self.fresh_rx.recv() => match job {
                Ok(job) => Some(job),
                // Fresh keys are done; retries may still come until the queue closes.
                Err(_) => self.retry_rx.recv().await.ok(),
            },
        }
    }

    async fn requeue(&self, job: Job) {
        if self.retry_tx.send(job).await.is_err() {
            self.settle();
        }
    }
}

/// One instance in the pool, with its pacer and state.
struct Member {
    instance: Instance,
    pacer: Pacer,
    in_flight: Arc<Semaphore>,
    removed: AtomicBool,
    /// While the instance answers "starting": when it may be tried again, and since when.
    starting: Mutex<Option<(Instant, Instant)>>,
}

/// Everything a dispatcher and its requests share.
struct Shared {
    client: Client,
    settings: Settings,
    queue: Arc<Queue>,
    outcomes: mpsc::Sender<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
    live_members: AtomicUsize,
    calls_left: Option<AtomicU64>,
}

/// Runs the fetcher until the queue is drained or the run stops. Outcomes go to `outcomes`;
/// the function returns once every request it started has finished.
pub async fn run(
    client: Client,
    instances: Vec<Instance>,
    settings: Settings,
    queue: Arc<Queue>,
    outcomes: mpsc::Sender<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
) {
    let per_instance = in_flight_limit(settings.rps_per_instance);
    let members: Vec<Arc<Member>> = instances
        .into_iter()
        .map(|instance| {
            Arc::new(Member {
                instance,
                pacer: Pacer::new(settings.rps_per_instance, settings.pacing_margin),
                in_flight: Arc::new(Semaphore::new(per_instance)),
                removed: AtomicBool::new(false),
                starting: Mutex::new(None),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        client,
        calls_left: settings.max_calls.map(AtomicU64::new),
        settings,
        queue: queue.clone(),
        outcomes,
        stats,
        stop: stop.clone(),
        live_members: AtomicUsize::new(members.len()),
    });
    let mut dispatchers = tokio::task::JoinSet::new();
    for member in members {
        dispatchers.spawn(dispatch(shared.clone(), member));
    }
    // When the run stops, keys still queued are not reached: they stay due for the next run.
    let closer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            stop.stopped().await;
            queue.close();
        })
    };
    while dispatchers.join_next().await.is_some() {}
    closer.abort();
}

/// Requests in flight per instance: enough to keep the pace through slow answers.
fn in_flight_limit(rps: f64) -> usize {
    if rps <= 0.0 {
        32
    } else {
        ((rps * 4.0).ceil() as usize).clamp(4, 256)
    }
}

async fn dispatch(shared: Arc<Shared>, member: Arc<Member>) {
    let mut requests = tokio::task::JoinSet::new();
    loop {
        if member.removed.load(Ordering::SeqCst) || shared.stop.reason().is_some() {
            break;
        }
        wait_while_starting(&member).await;
        let Some(job) = shared.queue.next().await else {
            break;
        };
        let Ok(permit) = member.in_flight.clone().acquire_owned().await else {
            break;
        };
        tokio::select! {
            _ = member.pacer.ready() => {}
            _ = shared.stop.stopped() => { shared.queue.settle(); break; }
        }
        if shared.stop.reason().is_some() {
            shared.queue.settle();
            break;
        }
        if member.removed.load(Ordering::SeqCst) {
            shared.queue.requeue(job).await;
            break;
        }
        if !take_budget(&shared) {
            shared.queue.settle();
            shared.stop.trigger(StopReason::Budget);
            break;
        }
        let (shared, member) = (shared.clone(), member.clone());
        requests.spawn(async move {
            let retry = attempt(&shared, &member, job).await;
            // The backoff does not hold the instance's in-flight slot.
            drop(permit);
            if let Some(retry) = retry {
                requeue_after(&shared, retry).await;
            }
        });
        // Reap finished requests so the set does not grow.
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
}

fn take_budget(shared: &Shared) -> bool {
    match &shared.calls_left {
        None => true,
        Some(left) => left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok(),
    }
}

async fn wait_while_starting(member: &Member) {
    let until = member
        .starting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map(|(until, _)| until);
    if let Some(until) = until {
        tokio::time::sleep_until(until.into()).await;
    }
}

/// A key to try again after `wait`.
struct Retry {
    job: Job,
    wait: Duration,
}

/// One call for `job` on `member`, and what it means for the key and the instance.
async fn attempt(shared: &Shared, member: &Member, mut job: Job) -> Option<Retry> {
    shared.stats.count_call(&member.instance.id);
    let answer = shared
        .client
        .contact_info(&member.instance, &job.chat_id)
        .await;
    job.attempts += 1;
    match answer.verdict {
        Verdict::Answer => {
            clear_starting(member);
            let now = chrono::Utc::now();
            match normalise::normalise(
                &job.chat_id,
                job.phone.clone(),
                shared.settings.messenger,
                &answer.body,
                now,
            ) {
                Ok(enriched) => {
                    settle(shared, KeyOutcome::Enriched(Box::new(enriched))).await;
                    None
                }
                Err(_) => {
                    let problem =
                        Problem::new("bad_body", Some(200), "the answer is not a JSON object");
                    retry_or_fail(shared, job, problem).await
                }
            }
        }
        Verdict::Transient(problem) => {
            if problem.status == Some(429) {
                Stats::add(&shared.stats.http_429, 1);
                member.pacer.slow_down();
            }
            retry_or_fail(shared, job, problem).await
        }
        Verdict::KeyRejected(problem) => {
            let failed = failed_key(shared, &job, &problem, true);
            settle(shared, failed).await;
            None
        }
        // The instance's fault, not the key's: the key goes back to the queue for another try.
        Verdict::InstanceStarting(problem) => {
            job.attempts -= 1;
            if !mark_starting(shared, member) {
                remove_member(shared, member, &problem);
            }
            shared.queue.requeue(job).await;
            None
        }
        Verdict::InstanceUnusable(problem) | Verdict::QuotaExhausted(problem) => {
            job.attempts -= 1;
            remove_member(shared, member, &problem);
            shared.queue.requeue(job).await;
            None
        }
    }
}

/// A failed attempt: a failure row once the attempts run out, else a retry after a backoff.
async fn retry_or_fail(shared: &Shared, job: Job, problem: Problem) -> Option<Retry> {
    if job.attempts >= shared.settings.max_attempts {
        let failed = failed_key(shared, &job, &problem, false);
        settle(shared, failed).await;
        return None;
    }
    Stats::add(&shared.stats.retries, 1);
    // A 429 means the spacing was too tight, and the pacer now spaces wider: the key may go
    // back to the queue after about one interval, not after the long backoff of a server error.
    let base = match (problem.status, shared.settings.rps_per_instance) {
        (Some(429), rps) if rps > 0.0 => Duration::from_secs_f64(1.0 / rps),
        _ => shared.settings.backoff_base,
    };
    let wait = backoff(&shared.settings, base, job.attempts, problem.retry_after);
    tracing::debug!(chat_id = %job.chat_id, attempt = job.attempts, ?wait, "retrying: {}", problem.message);
    Some(Retry { job, wait })
}

/// Puts a key back into the queue after its backoff (unless the run stops first).
async fn requeue_after(shared: &Shared, retry: Retry) {
    tokio::select! {
        _ = tokio::time::sleep(retry.wait) => shared.queue.requeue(retry.job).await,
        _ = shared.stop.stopped() => shared.queue.settle(),
    }
}

/// Exponential backoff from `base` with jitter; a `Retry-After` is a floor, capped.
pub fn backoff(
    settings: &Settings,
    base: Duration,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(settings.backoff_cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(floor) => jittered.max(floor.min(settings.retry_after_cap)),
        None => jittered,
    }
}

fn failed_key(shared: &Shared, job: &Job, problem: &Problem, permanent: bool) -> KeyOutcome {
    let next_due = chrono::Utc::now()
        + chrono::Duration::from_std(shared.settings.transient_retry_after).unwrap_or_default();
    KeyOutcome::Failed(FailedKey {
        key: job.chat_id.clone(),
        input_value: None,
        reason: problem.reason,
        message: crate::redact::mask(&problem.message).into_owned(),
        http_status: problem.status,
        attempts: job.attempts,
        permanent,
        next_due_at: format_time(next_due),
    })
}

async fn settle(shared: &Shared, outcome: KeyOutcome) {
    if shared.outcomes.send(outcome).await.is_err() {
        shared
            .stop
            .trigger(StopReason::Store("the writer stopped".into()));
    }
    shared.queue.settle();
}

/// Notes a "starting" answer; false once the instance has been starting for too long.
fn mark_starting(shared: &Shared, member: &Member) -> bool {
    let mut starting = member.starting.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let since = starting.map_or(now, |(_, since)| since);
    let waited = now - since;
    if waited >= shared.settings.starting_wait {
        return false;
    }
    let delay = (shared.settings.backoff_base * 5)
        .max(waited)
        .min(shared.settings.starting_wait - waited);
    tracing::warn!(instance = %member.instance.id, "the instance is starting; waiting {delay:?} before the next call");
    *starting = Some((now + delay, since));
    true
}

fn clear_starting(member: &Member) {
    *member.starting.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

fn remove_member(shared: &Shared, member: &Member, problem: &Problem) {
    if member.removed.swap(true, Ordering::SeqCst) {
        return;
    }
    let left = shared.live_members.fetch_sub(1, Ordering::SeqCst) - 1;
    tracing::warn!(
        instance = %member.instance.id,
        "instance {} taken out of the pool: {} ({} left)",
        member.instance.id,
        problem.message,
        left
    );
    if left == 0 {
        shared.stop.trigger(match problem.reason {
            "quota_exhausted" => StopReason::Quota(problem.message.clone()),
            _ => StopReason::NoInstances(format!(
                "no usable instance is left; the last one failed with: {}",
                problem.message
            )),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            messenger: Messenger::Whatsapp,
            rps_per_instance: 1.0,
            pacing_margin: 0.03,
            max_attempts: 5,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(5),
            starting_wait: Duration::from_secs(60),
            transient_retry_after: Duration::from_secs(3600),
            max_calls: None,
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let s = settings();
        let backoff = |attempts, retry_after| backoff(&s, s.backoff_base, attempts, retry_after);
        for _ in 0..50 {
            let first = backoff(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(3, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(backoff(30, None) <= Duration::from_secs(1));
            assert!(backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
            assert_eq!(
                backoff(1, Some(Duration::from_secs(60))),
                Duration::from_secs(5)
            );
        }
    }

    #[test]
    fn in_flight_limit_scales_with_rate() {
        assert_eq!(in_flight_limit(1.0), 4);
        assert_eq!(in_flight_limit(10.0), 40);
        assert_eq!(in_flight_limit(0.0), 32);
    }
}
