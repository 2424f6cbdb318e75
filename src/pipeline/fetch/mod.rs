//! The fetch stage: one dispatcher per instance pulls keys from a shared queue at its own pace, so
//! N instances give N times the throughput, and requests overlap so latency does not lower the
//! rate. Retries go back into the queue after a backoff and are paced like any call; answers that
//! make an instance unusable take it out of the pool, or stop the run when none is left.
//!
//! HTTP sits behind [`ContactApi`], so pacing, retries and the pool are unit-tested against a
//! simulated API on tokio's paused clock.

pub(crate) mod queue;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::api::pacer::{Margin, Pacer};
use crate::api::{Account, Client, Instance, Problem, Verdict};
use crate::chat_id;
use crate::chat_id::Messenger;
use crate::config::FetchConfig;
use crate::domain::Clock;
use crate::domain::Rate;
use crate::normalise;
use crate::pipeline::stop::{Stop, StopReason};
use crate::pipeline::task::TaskDied;
use crate::reason::Reason;
use crate::stats::Stats;
use crate::store::writer::{FailedKey, KeyOutcome, Resolution};
use queue::{Job, Queue};

/// The calls the fetch stage makes: the seam between dispatching and HTTP.
pub(crate) trait ContactApi: Send + Sync + 'static {
    /// One `getContactInfo` call for `chat_id` on `instance`.
    fn contact_info(
        &self,
        instance: &Instance,
        chat_id: &str,
    ) -> impl Future<Output = Verdict> + Send;

    /// One Telegram `checkAccount` call for a phone number or username on `instance`.
    fn check_account(
        &self,
        instance: &Instance,
        handle: &str,
    ) -> impl Future<Output = Verdict> + Send;

    /// Whether `instance` can be called (preflight); why not, with advice.
    fn check_instance(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl ContactApi for Client {
    fn contact_info(
        &self,
        instance: &Instance,
        chat_id: &str,
    ) -> impl Future<Output = Verdict> + Send {
        Client::contact_info(self, instance, chat_id)
    }

    fn check_account(
        &self,
        instance: &Instance,
        handle: &str,
    ) -> impl Future<Output = Verdict> + Send {
        Client::check_account(self, instance, handle)
    }

    fn check_instance(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<(), String>> + Send {
        crate::pipeline::preflight::check_instance(self, instance)
    }
}

/// What the fetch stage needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) messenger: Messenger,
    pub(crate) fetch: FetchConfig,
    pub(crate) max_calls: Option<u64>,
    /// Each instance's state is checked before its first call.
    pub(crate) preflight: bool,
    /// The margin an earlier run of these instances ended with, at the same rate.
    pub(crate) learnt_margin: Option<f64>,
    /// The time answers are stamped with.
    pub(crate) clock: Clock,
}

/// One instance in the pool, with its pacers and state.
struct Member {
    instance: Instance,
    pacer: Pacer,
    /// Paces Telegram's `checkAccount`, whose limit is its own.
    check_pacer: Pacer,
    /// Whether it may still call `checkAccount` (until its monthly quota answers 466).
    checking: AtomicBool,
    in_flight: Arc<Semaphore>,
    removed: AtomicBool,
    /// While the instance answers "starting": when it may be tried again, and since when.
    starting: Mutex<Option<(Instant, Instant)>>,
}

/// Everything a dispatcher and its requests share.
struct Shared<A> {
    api: A,
    settings: Settings,
    queue: Arc<Queue>,
    outcomes: mpsc::Sender<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
    live_members: AtomicUsize,
    /// Instances that may still call `checkAccount`.
    checkers_left: AtomicUsize,
    calls_left: Option<AtomicU64>,
}

/// Runs the fetch stage until the queue is drained or the run stops. Outcomes go to `outcomes`;
/// it returns once every request it started has finished.
pub(crate) async fn run<A: ContactApi>(
    api: A,
    instances: Vec<Instance>,
    settings: Settings,
    queue: Arc<Queue>,
    outcomes: mpsc::Sender<KeyOutcome>,
    stats: Arc<Stats>,
    stop: Stop,
) -> Result<(), TaskDied> {
    let per_instance = in_flight_limit(settings.fetch.rate);
    // One learnt margin for the pool: its instances share the network path to the API.
    let margin = match settings.learnt_margin {
        Some(learnt) => Margin::learnt(learnt),
        None => Margin::new(settings.fetch.pacing_margin, instances.len()),
    };
    if let Some(interval) = settings.fetch.rate.interval() {
        stats.follow_pacing(margin.clone(), interval);
    }
    let members: Vec<Arc<Member>> = instances
        .into_iter()
        .map(|instance| {
            Arc::new(Member {
                instance,
                pacer: Pacer::new(settings.fetch.rate, margin.clone()),
                check_pacer: Pacer::new(settings.fetch.check_rate, margin.clone()),
                checking: AtomicBool::new(true),
                in_flight: Arc::new(Semaphore::new(per_instance)),
                removed: AtomicBool::new(false),
                starting: Mutex::new(None),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        api,
        calls_left: settings.max_calls.map(AtomicU64::new),
        settings,
        queue: queue.clone(),
        outcomes,
        stats,
        stop: stop.clone(),
        live_members: AtomicUsize::new(members.len()),
        checkers_left: AtomicUsize::new(members.len()),
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
    let mut result = Ok(());
    while let Some(joined) = dispatchers.join_next().await {
        if let Err(e) = joined {
            result = Err(TaskDied::new("a dispatcher", e));
            shared.queue.close();
        }
    }
    closer.abort();
    queue.close();
    result
}

/// Requests in flight per instance: enough to keep the pace through answers that take up to
/// 4 s, and no more than an unpaced instance has (more only adds connections: at 256 a pool
/// paced at a million calls a second went at half the unpaced speed).
fn in_flight_limit(rate: Rate) -> usize {
    const UNPACED: usize = 32;
    match rate {
        Rate::Unlimited => UNPACED,
        Rate::PerSecond(rps) => ((rps * 4.0).ceil() as usize).clamp(4, UNPACED),
    }
}

async fn dispatch<A: ContactApi>(shared: Arc<Shared<A>>, member: Arc<Member>) {
    if shared.settings.preflight {
        let checked = tokio::select! {
            checked = shared.api.check_instance(&member.instance) => checked,
            () = shared.stop.stopped() => return,
        };
        if let Err(why) = checked {
            let problem = Problem::new(Reason::InstanceUnusable, None, why);
            take_out(&shared, &member, &problem, |_| {
                tracing::warn!(
                    "instance {}: {}; left out of the pool",
                    member.instance.id,
                    problem.message
                );
            });
            return;
        }
    }
    let mut requests = tokio::task::JoinSet::new();
    loop {
        if member.removed.load(Ordering::SeqCst) || shared.stop.reason().is_some() {
            break;
        }
        if let Some(until) = starting_until(&member) {
            tokio::time::sleep_until(until).await;
        }
        let Some(job) = shared.queue.next().await else {
            break;
        };
        let checks = chat_id::needs_resolving(&job.chat_id);
        if checks && !member.checking.load(Ordering::SeqCst) {
            leave_to_checkers(&shared, job).await;
            continue;
        }
        // The instance may have answered "starting" while this dispatcher waited for a key: the
        // key goes back (another instance may take it) and this one waits first.
        if starting_until(&member).is_some() {
            shared.queue.requeue(job).await;
            continue;
        }
        let Ok(permit) = member.in_flight.clone().acquire_owned().await else {
            break;
        };
        let pacer = match checks {
            true => &member.check_pacer,
            false => &member.pacer,
        };
        let sent_at = tokio::select! {
            sent_at = pacer.ready() => sent_at,
            _ = shared.stop.stopped() => break,
        };
        if shared.stop.reason().is_some() {
            break;
        }
        if member.removed.load(Ordering::SeqCst) {
            shared.queue.requeue(job).await;
            break;
        }
        if !take_budget(&shared) {
            shared.stop.trigger(StopReason::Budget);
            break;
        }
        let (shared, member) = (shared.clone(), member.clone());
        requests.spawn(async move {
            let retry = attempt(&shared, &member, job, sent_at).await;
            // The backoff does not hold the instance's in-flight slot.
            drop(permit);
            if let Some(retry) = retry {
                requeue_after(&shared, retry).await;
            }
        });
        // Reap finished requests so the set does not grow.
        while requests.try_join_next().is_some() {}
    }
    while let Some(joined) = requests.join_next().await {
        if let Err(e) = joined {
            // A request that died takes its dispatcher with it: the run fails.
            std::panic::resume_unwind(e.into_panic());
        }
    }
    shared
        .stats
        .note_spacing(&member.instance.id, member.pacer.spacing());
}

/// A phone number or username this instance can no longer check: another instance checks it,
/// or, once none can, it waits for the next run (its job is dropped: it stays due).
async fn leave_to_checkers<A>(shared: &Shared<A>, job: Job) {
    if shared.checkers_left.load(Ordering::SeqCst) == 0 {
        return;
    }
    shared.queue.requeue(job).await;
    // The others take it; this dispatcher must not spin on it meanwhile.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn take_budget<A>(shared: &Shared<A>) -> bool {
    match &shared.calls_left {
        None => true,
        Some(left) => left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok(),
    }
}

/// While the instance answers "starting": when it may be tried again.
fn starting_until(member: &Member) -> Option<Instant> {
    member
        .starting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map(|(until, _)| until)
        .filter(|until| *until > Instant::now())
}

/// A key to try again after `wait`.
struct Retry {
    job: Job,
    wait: Duration,
}

/// One call for `job` on `member`, sent at `sent_at`, and what it means for the key, the instance
/// and the pool's pacing.
async fn attempt<A: ContactApi>(
    shared: &Shared<A>,
    member: &Member,
    mut job: Job,
    sent_at: Instant,
) -> Option<Retry> {
    shared.stats.count_call(&member.instance.id);
    let checks = chat_id::needs_resolving(&job.chat_id);
    let (verdict, pacer) = match checks {
        true => {
            Stats::add(&shared.stats.checks, 1);
            let verdict = shared.api.check_account(&member.instance, &job.chat_id);
            (verdict.await, &member.check_pacer)
        }
        false => {
            let verdict = shared.api.contact_info(&member.instance, &job.chat_id);
            (verdict.await, &member.pacer)
        }
    };
    job.attempts += 1;
    let status = match verdict.problem() {
        Some(p) => p.status,
        None => Some(200),
    };
    shared.stats.count_response(&member.instance.id, status);
    match verdict.problem() {
        Some(p) if p.reason == Reason::RateLimited => pacer.rate_limited(sent_at),
        // No answer: whether the limiter saw the call is unknown.
        Some(p) if p.status.is_none() => {}
        _ => pacer.accepted(),
    }
    match verdict {
        Verdict::Answer(answer) if checks => {
            clear_starting(member);
            match answer.account() {
                Ok(account) => resolved(shared, job, account).await,
                Err(problem) => retry_or_fail(shared, job, problem).await,
            }
        }
        Verdict::Answer(answer) => {
            clear_starting(member);
            let mut enriched = normalise::normalise(
                &job.chat_id,
                job.phone.clone(),
                shared.settings.messenger,
                &answer,
                shared.settings.clock.now(),
            );
            enriched.handle = job.handle.clone();
            deliver(shared, job, KeyOutcome::Enriched(Box::new(enriched))).await;
            None
        }
        // checkAccount's monthly quota: this instance stops checking, and goes on asking for
        // contacts (a quota of its own).
        Verdict::QuotaExhausted(problem) if checks => {
            job.attempts -= 1;
            stop_checking(shared, member, &problem);
            shared.queue.requeue(job).await;
            None
        }
        Verdict::Transient(problem) => {
            if problem.reason == Reason::RateLimited {
                Stats::add(&shared.stats.http_429, 1);
            }
            retry_or_fail(shared, job, problem).await
        }
        Verdict::KeyRejected(problem) => {
            let failed = failed_key(&job, &problem, true);
            deliver(shared, job, failed).await;
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

/// What `checkAccount` found: the chat id is kept at once, and the key goes back to the queue
/// (ahead of fresh keys) to be asked for its contact; no account is a permanent failure, asked
/// again after `--retry-failed-after`.
async fn resolved<A>(shared: &Shared<A>, mut job: Job, account: Account) -> Option<Retry> {
    match account {
        Account::Exists(chat_id) => {
            let resolution = Resolution {
                handle: job.chat_id.clone(),
                chat_id: chat_id.clone(),
            };
            if shared
                .outcomes
                .send(KeyOutcome::Resolved(resolution))
                .await
                .is_err()
            {
                shared
                    .stop
                    .trigger(StopReason::Store("the writer stopped".into()));
                return None;
            }
            job.handle = Some(std::mem::replace(&mut job.chat_id, chat_id));
            job.attempts = 0;
            shared.queue.requeue(job).await;
        }
        Account::Missing => {
            let problem = Problem::new(
                Reason::NoAccount,
                Some(200),
                "no Telegram account has this phone number or username",
            );
            let failed = failed_key(&job, &problem, true);
            deliver(shared, job, failed).await;
        }
    }
    None
}

/// An instance whose `checkAccount` quota is used up checks no more; once none can, phone
/// numbers and usernames wait for the next run while the known ids go on.
fn stop_checking<A>(shared: &Shared<A>, member: &Member, problem: &Problem) {
    if !member.checking.swap(false, Ordering::SeqCst) {
        return;
    }
    let left = shared.checkers_left.fetch_sub(1, Ordering::SeqCst) - 1;
    if left == 0 {
        shared.stats.note_checks_over(&problem.message);
    }
    tracing::warn!(
        instance = %member.instance.id,
        "instance {} checks no more phone numbers or usernames this run: {} ({left} instances still check; chat ids already known go on)",
        member.instance.id,
        problem.message,
    );
}

/// A failed attempt: a failure row once the attempts run out, else a retry after a backoff.
async fn retry_or_fail<A>(shared: &Shared<A>, job: Job, problem: Problem) -> Option<Retry> {
    let fetch = &shared.settings.fetch;
    if job.attempts >= fetch.max_attempts {
        let failed = failed_key(&job, &problem, false);
        deliver(shared, job, failed).await;
        return None;
    }
    Stats::add(&shared.stats.retries, 1);
    // A 429 means the spacing was too tight, and the pacer now spaces wider: the key may go
    // back to the queue after about one interval, not after the long backoff of a server error.
    let base = match (problem.reason, fetch.rate.interval()) {
        (Reason::RateLimited, Some(interval)) => interval,
        _ => fetch.backoff_base,
    };
    let wait = backoff(fetch, base, job.attempts, problem.retry_after);
    tracing::debug!(chat_id = %job.chat_id, attempt = job.attempts, ?wait, "retrying: {}", problem.message);
    Some(Retry { job, wait })
}

/// Puts a key back into the queue after its backoff (unless the run stops first).
async fn requeue_after<A>(shared: &Shared<A>, retry: Retry) {
    tokio::select! {
        _ = tokio::time::sleep(retry.wait) => shared.queue.requeue(retry.job).await,
        _ = shared.stop.stopped() => {}
    }
}

/// Exponential backoff from `base` with jitter; a `Retry-After` is a floor, capped.
fn backoff(
    fetch: &FetchConfig,
    base: Duration,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(fetch.backoff_cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(floor) => jittered.max(floor.min(fetch.retry_after_cap)),
        None => jittered,
    }
}

fn failed_key(job: &Job, problem: &Problem, permanent: bool) -> KeyOutcome {
    KeyOutcome::Failed(FailedKey {
        key: job.chat_id.clone(),
        input_value: None,
        reason: problem.reason,
        message: crate::redact::mask(&problem.message).into_owned(),
        http_status: problem.status,
        attempts: job.attempts,
        permanent,
        handle: job.handle.clone(),
    })
}

/// Hands a key's final outcome to the writer; the job is settled once it is sent.
async fn deliver<A>(shared: &Shared<A>, job: Job, outcome: KeyOutcome) {
    if shared.outcomes.send(outcome).await.is_err() {
        shared
            .stop
            .trigger(StopReason::Store("the writer stopped".into()));
    }
    drop(job);
}

/// Notes a "starting" answer; false once the instance has been starting for too long.
fn mark_starting<A>(shared: &Shared<A>, member: &Member) -> bool {
    let fetch = &shared.settings.fetch;
    let mut starting = member.starting.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let since = starting.map_or(now, |(_, since)| since);
    let waited = now - since;
    if waited >= fetch.starting_wait {
        return false;
    }
    let delay = (fetch.backoff_base.saturating_mul(5))
        .max(waited)
        .min(fetch.starting_wait - waited);
    tracing::warn!(instance = %member.instance.id, "the instance is starting; waiting {delay:?} before the next call");
    *starting = Some((now + delay, since));
    true
}

fn clear_starting(member: &Member) {
    *member.starting.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

fn remove_member<A>(shared: &Shared<A>, member: &Member, problem: &Problem) {
    take_out(shared, member, problem, |left| {
        tracing::warn!(
            instance = %member.instance.id,
            "instance {} taken out of the pool: {} ({left} left)",
            member.instance.id,
            problem.message,
        );
    });
}

/// Takes `member` out of the pool once (`say` tells how many are left), and stops the run for
/// `problem` when it was the last.
fn take_out<A>(shared: &Shared<A>, member: &Member, problem: &Problem, say: impl FnOnce(usize)) {
    if member.removed.swap(true, Ordering::SeqCst) {
        return;
    }
    let left = shared.live_members.fetch_sub(1, Ordering::SeqCst) - 1;
    say(left);
    if left == 0 {
        shared.stop.trigger(match problem.reason {
            Reason::QuotaExhausted => StopReason::Quota(problem.message.clone()),
            _ => StopReason::NoInstances(format!(
                "no usable instance is left; the last one failed with: {}",
                problem.message
            )),
        });
    }
}
