//! The fetch stage against a simulated API on tokio's paused clock: pacing, the pool, retries,
//! budgets and stops, deterministic and fast.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::api::classify::classify;

/// A GREEN-API stand-in: a strict per-instance limit at arrival, a fixed latency, and scripted
/// answers per chat id (then a normal answer). Instances named in `unusable` answer 401.
#[derive(Clone, Default)]
struct FakeApi(Arc<Inner>);

/// Scripted answers: status, body, Retry-After.
type Script = VecDeque<(u16, &'static str, Option<Duration>)>;

#[derive(Default)]
struct Inner {
    limit: Option<Duration>,
    latency: Duration,
    /// Each call reaches the limiter after a random 0..this delay.
    arrival_jitter: Duration,
    rng: Mutex<Option<fastrand::Rng>>,
    script: Mutex<HashMap<String, Script>>,
    unusable: Vec<(&'static str, u16)>,
    /// Instances whose preflight answers after this long.
    slow_preflight: Vec<(&'static str, Duration)>,
    /// The last accepted call per instance and method (each method has its own limit).
    last_accepted: Mutex<HashMap<(String, &'static str), Instant>>,
    calls: Mutex<Vec<String>>,
}

impl FakeApi {
    fn new(limit: Option<Duration>, latency: Duration) -> Self {
        FakeApi(Arc::new(Inner {
            limit,
            latency,
            ..Inner::default()
        }))
    }

    /// A limiter that calls reach after a random 0..`jitter` delay (seeded: deterministic).
    fn jittery(limit: Duration, jitter: Duration, latency: Duration, seed: u64) -> Self {
        FakeApi(Arc::new(Inner {
            limit: Some(limit),
            latency,
            arrival_jitter: jitter,
            rng: Mutex::new(Some(fastrand::Rng::with_seed(seed))),
            ..Inner::default()
        }))
    }

    fn with_unusable(limit: Option<Duration>, unusable: Vec<(&'static str, u16)>) -> Self {
        FakeApi(Arc::new(Inner {
            limit,
            unusable,
            ..Inner::default()
        }))
    }

    /// `chat_id` gets these answers (status, body, Retry-After) before a normal one.
    fn script(&self, chat_id: &str, answers: &[(u16, &'static str, Option<Duration>)]) {
        self.0
            .script
            .lock()
            .unwrap()
            .insert(chat_id.to_string(), answers.iter().copied().collect());
    }

    fn calls_by_instance(&self) -> HashMap<String, usize> {
        let mut by = HashMap::new();
        for id in self.0.calls.lock().unwrap().iter() {
            *by.entry(id.clone()).or_default() += 1;
        }
        by
    }
}

impl ContactApi for FakeApi {
    fn contact_info(
        &self,
        instance: &Instance,
        chat_id: &str,
    ) -> impl Future<Output = Verdict> + Send {
        let answer = r#"{"name":"x"}"#.to_string();
        self.call(instance, "getContactInfo", chat_id, answer)
    }

    /// Every phone number or username has an account, whose id is its digits (or 77 for a
    /// username) with a 1 in front.
    fn check_account(
        &self,
        instance: &Instance,
        handle: &str,
    ) -> impl Future<Output = Verdict> + Send {
        let digits: String = handle.chars().filter(char::is_ascii_digit).collect();
        let answer = format!(r#"{{"exist":true,"chatId":"1{digits}77"}}"#);
        self.call(instance, "checkAccount", handle, answer)
    }

    /// Instances named in `unusable` fail their preflight; those in `slow_preflight` answer late.
    fn check_instance(
        &self,
        instance: &Instance,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let unusable = self.0.unusable.iter().any(|(id, _)| *id == instance.id);
        let slow = self
            .0
            .slow_preflight
            .iter()
            .find(|(id, _)| *id == instance.id);
        let delay = slow.map_or(Duration::ZERO, |(_, d)| *d);
        async move {
            tokio::time::sleep(delay).await;
            match unusable {
                true => Err("not authorized".to_string()),
                false => Ok(()),
            }
        }
    }
}

impl FakeApi {
    /// One call of `method` for `key`: limited, scripted, else `answer`.
    fn call(
        &self,
        instance: &Instance,
        method: &'static str,
        key: &str,
        answer: String,
    ) -> impl Future<Output = Verdict> + Send {
        let inner = self.0.clone();
        let (id, chat_id) = (instance.id.clone(), key.to_string());
        async move {
            inner.calls.lock().unwrap().push(id.clone());
            let delay = inner
                .rng
                .lock()
                .unwrap()
                .as_mut()
                .map_or(Duration::ZERO, |rng| {
                    inner.arrival_jitter.mul_f64(rng.f64())
                });
            tokio::time::sleep(delay).await;
            let now = Instant::now();
            let limited = inner.limit.is_some_and(|limit| {
                let mut last = inner.last_accepted.lock().unwrap();
                let key = (id.clone(), method);
                let refused = last.get(&key).is_some_and(|t| now - *t < limit);
                if !refused {
                    last.insert(key, now);
                }
                refused
            });
            tokio::time::sleep(inner.latency).await;
            if limited {
                return classify(429, "{}", None);
            }
            if let Some((_, status)) = inner.unusable.iter().find(|(u, _)| *u == id) {
                return classify(*status, "{}", None);
            }
            let scripted = inner
                .script
                .lock()
                .unwrap()
                .get_mut(&chat_id)
                .and_then(VecDeque::pop_front);
            match scripted {
                Some((status, body, retry_after)) => classify(status, body, retry_after),
                None => classify(200, &answer, None),
            }
        }
    }
}

fn instances(ids: &[&str]) -> Vec<Instance> {
    ids.iter()
        .map(|id| Instance::parse(&format!("{id}:token-{id}-abcdef")).unwrap())
        .collect()
}

fn settings(rate: Rate) -> Settings {
    Settings {
        messenger: Messenger::Whatsapp,
        fetch: FetchConfig {
            rate,
            pacing_margin: 0.03,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            retry_after_cap: Duration::from_secs(10),
            starting_wait: Duration::from_secs(60),
            ..FetchConfig::default()
        },
        max_calls: None,
        preflight: false,
        learnt_margin: None,
        clock: crate::domain::Clock::default(),
    }
}

/// What one run of the stage did.
struct Ran {
    outcomes: Vec<KeyOutcome>,
    stats: Arc<Stats>,
    stopped: Option<StopReason>,
    elapsed: Duration,
}

impl Ran {
    fn enriched(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, KeyOutcome::Enriched(_)))
            .count()
    }

    fn failed(&self) -> Vec<&FailedKey> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                KeyOutcome::Failed(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn resolved(&self) -> Vec<&Resolution> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                KeyOutcome::Resolved(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

async fn run_stage(api: FakeApi, ids: &[&str], settings: Settings, keys: usize, stop: Stop) -> Ran {
    let keys = (0..keys).map(|i| format!("7900{i:07}@c.us")).collect();
    run_stage_on(api, ids, settings, keys, stop).await
}

async fn run_stage_on(
    api: FakeApi,
    ids: &[&str],
    settings: Settings,
    keys: Vec<String>,
    stop: Stop,
) -> Ran {
    let started = Instant::now();
    let (queue, feeder) = Queue::new(16);
    tokio::spawn(async move {
        for key in keys {
            if !feeder.push(key, None).await {
                return;
            }
        }
    });
    let (tx, mut rx) = mpsc::channel(8);
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(outcome) = rx.recv().await {
            all.push(outcome);
        }
        all
    });
    let stats = Arc::new(Stats::default());
    let result = run(
        api,
        instances(ids),
        settings,
        queue,
        tx,
        stats.clone(),
        stop.clone(),
    )
    .await;
    assert!(result.is_ok());
    Ran {
        outcomes: collector.await.unwrap(),
        stats,
        stopped: stop.reason(),
        elapsed: started.elapsed(),
    }
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn one_instance_is_paced_at_its_limit_with_no_429() {
    let api = FakeApi::new(Some(Duration::from_secs(1)), Duration::from_millis(200));
    let ran = run_stage(
        api,
        &["1"],
        settings(Rate::PerSecond(1.0)),
        20,
        Stop::default(),
    )
    .await;
    assert_eq!(ran.enriched(), 20);
    assert_eq!(Stats::get(&ran.stats.http_429), 0);
    // 19 intervals of 1 s plus a margin that starts at 3% and probes down, then the last
    // answer's latency.
    let elapsed = seconds(ran.elapsed);
    assert!(
        elapsed > 19.0 + 0.2 && elapsed < 19.0 * 1.03 + 0.2,
        "{elapsed}"
    );
}

/// Telegram keys: `phones` phone numbers and `ids` chat ids, interleaved.
fn telegram_keys(phones: usize, ids: usize) -> Vec<String> {
    let phones = (0..phones).map(|i| format!("+7900{i:07}"));
    let ids = (0..ids).map(|i| format!("{}", 5_000_000 + i));
    let mut keys: Vec<String> = phones.chain(ids).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut keys);
    keys
}

#[tokio::test(start_paused = true)]
async fn telegram_handles_are_checked_then_asked_each_method_at_its_own_limit() {
    let api = FakeApi::new(Some(Duration::from_millis(100)), Duration::from_millis(30));
    let mut settings = settings(Rate::PerSecond(10.0));
    settings.fetch.check_rate = Rate::PerSecond(10.0);
    let keys = telegram_keys(30, 10);
    let ran = run_stage_on(api.clone(), &["1"], settings, keys, Stop::default()).await;
    assert_eq!(ran.enriched(), 40);
    assert_eq!(ran.resolved().len(), 30);
    assert_eq!(Stats::get(&ran.stats.checks), 30);
    assert_eq!(Stats::get(&ran.stats.requests), 70);
    assert_eq!(Stats::get(&ran.stats.http_429), 0);
    // 40 getContactInfo calls at 10/s bound the run: the 30 checks go on beside them.
    let elapsed = seconds(ran.elapsed);
    assert!(elapsed < 4.0 * 1.05 + 0.2, "{elapsed}");
    // Each contact is stored under its chat id, and held under the handle it came from.
    for outcome in &ran.outcomes {
        if let KeyOutcome::Enriched(e) = outcome {
            assert!(
                !chat_id::needs_resolving(&e.contact.chat_id),
                "{}",
                e.contact.chat_id
            );
            if let Some(handle) = &e.handle {
                assert_eq!(outcome.claim(), Some(handle.as_str()));
                assert!(e.contact.phone.as_deref().is_none() || handle.starts_with('+'));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_466_on_check_account_stops_checking_and_the_known_ids_go_on() {
    let api = FakeApi::new(None, Duration::from_millis(10));
    // Each instance's checkAccount quota is used up: whichever phone number it checks first.
    for i in 0..3 {
        api.script(&format!("+7900{i:07}"), &[(466, "{}", None); 2]);
    }
    let keys = telegram_keys(3, 12);
    let ran = run_stage_on(
        api,
        &["1", "2"],
        settings(Rate::Unlimited),
        keys,
        Stop::default(),
    )
    .await;
    // Each instance met the quota (with the checks it had in flight then); the phone numbers
    // wait for the next run (no outcome: they stay due), and every id is enriched.
    let checks = Stats::get(&ran.stats.checks);
    assert!((2..=6).contains(&checks), "{checks}");
    assert_eq!(ran.enriched(), 12);
    assert!(ran.resolved().is_empty());
    assert!(ran.failed().is_empty(), "{:?}", ran.failed());
    assert_eq!(ran.stopped, None);
}

#[tokio::test(start_paused = true)]
async fn a_phone_number_without_an_account_is_a_permanent_failure_of_the_handle() {
    let api = FakeApi::new(None, Duration::ZERO);
    api.script("+79000000001", &[(200, r#"{"exist":false}"#, None)]);
    let keys = vec!["+79000000000".into(), "+79000000001".into()];
    let ran = run_stage_on(
        api,
        &["1"],
        settings(Rate::Unlimited),
        keys,
        Stop::default(),
    )
    .await;
    assert_eq!(ran.enriched(), 1);
    let failed = ran.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (
            failed[0].key.as_str(),
            failed[0].reason,
            failed[0].permanent
        ),
        ("+79000000001", Reason::NoAccount, true)
    );
}

#[tokio::test(start_paused = true)]
async fn a_pool_of_four_is_four_times_as_fast_and_shares_the_keys() {
    let api = FakeApi::new(Some(Duration::from_secs(1)), Duration::from_millis(300));
    let ran = run_stage(
        api.clone(),
        &["1", "2", "3", "4"],
        settings(Rate::PerSecond(1.0)),
        40,
        Stop::default(),
    )
    .await;
    assert_eq!(ran.enriched(), 40);
    assert_eq!(Stats::get(&ran.stats.http_429), 0);
    assert!(
        seconds(ran.elapsed) < 9.0 * 1.03 + 0.35,
        "{:?}",
        ran.elapsed
    );
    let calls = api.calls_by_instance();
    assert_eq!(calls.len(), 4);
    assert!(calls.values().all(|n| *n == 10), "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_and_run_out_into_failure_rows() {
    let api = FakeApi::new(None, Duration::from_millis(50));
    api.script("79000000000@c.us", &[(500, "{}", None); 3]);
    api.script("79000000001@c.us", &[(502, "{}", None), (503, "{}", None)]);
    let mut settings = settings(Rate::Unlimited);
    settings.fetch.max_attempts = 3;
    let ran = run_stage(api, &["1"], settings, 5, Stop::default()).await;
    assert_eq!(ran.enriched(), 4);
    let failed = ran.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].reason, failed[0].attempts, failed[0].permanent),
        (Reason::ServerError, 3, false)
    );
    assert_eq!(Stats::get(&ran.stats.retries), 4);
    assert_eq!(ran.stopped, None);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_for_the_wait() {
    let api = FakeApi::new(None, Duration::ZERO);
    api.script(
        "79000000000@c.us",
        &[(429, "{}", Some(Duration::from_secs(5)))],
    );
    let ran = run_stage(api, &["1"], settings(Rate::Unlimited), 1, Stop::default()).await;
    assert_eq!(ran.enriched(), 1);
    assert!(ran.elapsed >= Duration::from_secs(5), "{:?}", ran.elapsed);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_key_fails_once_and_permanently() {
    let api = FakeApi::new(None, Duration::ZERO);
    api.script(
        "79000000002@c.us",
        &[(400, "Validation failed. Details: chatId is invalid", None)],
    );
    let ran = run_stage(api, &["1"], settings(Rate::Unlimited), 3, Stop::default()).await;
    let failed = ran.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].reason, failed[0].attempts, failed[0].permanent),
        (Reason::Rejected, 1, true)
    );
    assert_eq!(Stats::get(&ran.stats.requests), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unusable_instance_leaves_the_pool_and_the_others_carry_on() {
    let api = FakeApi::with_unusable(Some(Duration::from_millis(100)), vec![("2", 401)]);
    let ran = run_stage(
        api,
        &["1", "2", "3"],
        settings(Rate::PerSecond(10.0)),
        30,
        Stop::default(),
    )
    .await;
    assert_eq!(
        ran.enriched(),
        30,
        "the failed instance's key went to the others"
    );
    assert!(ran.failed().is_empty());
    assert_eq!(ran.stopped, None);
}

#[tokio::test(start_paused = true)]
async fn each_instance_starts_calling_as_soon_as_its_own_preflight_answers() {
    let api = FakeApi(Arc::new(Inner {
        limit: Some(Duration::from_millis(100)),
        slow_preflight: vec![("2", Duration::from_secs(2))],
        ..Inner::default()
    }));
    let mut settings = settings(Rate::PerSecond(10.0));
    settings.preflight = true;
    let ran = run_stage(api.clone(), &["1", "2"], settings, 30, Stop::default()).await;
    assert_eq!(ran.enriched(), 30);
    // Instance 1 calls from the start (about 20 keys while 2 is checked), then both: about
    // 2.5 s. Waiting for the slowest preflight would have taken 2 s + 1.5 s.
    let elapsed = seconds(ran.elapsed);
    assert!(elapsed < 2.7, "{elapsed}");
    let calls = api.calls_by_instance();
    assert!(calls["1"] >= 20, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_fails_its_preflight_is_left_out_before_any_call() {
    let api = FakeApi::with_unusable(None, vec![("2", 401)]);
    let mut settings = settings(Rate::Unlimited);
    settings.preflight = true;
    let ran = run_stage(api.clone(), &["1", "2"], settings, 10, Stop::default()).await;
    assert_eq!(ran.enriched(), 10);
    assert_eq!(
        api.calls_by_instance().get("2"),
        None,
        "no call on instance 2"
    );
}

#[tokio::test(start_paused = true)]
async fn no_usable_instance_left_stops_the_run_and_fails_no_key() {
    let api = FakeApi::with_unusable(None, vec![("1", 401), ("2", 403)]);
    let ran = run_stage(
        api,
        &["1", "2"],
        settings(Rate::Unlimited),
        10,
        Stop::default(),
    )
    .await;
    assert!(ran.outcomes.is_empty());
    assert!(matches!(ran.stopped, Some(StopReason::NoInstances(_))));

    let api = FakeApi::with_unusable(None, vec![("1", 466)]);
    let ran = run_stage(api, &["1"], settings(Rate::Unlimited), 10, Stop::default()).await;
    assert!(matches!(ran.stopped, Some(StopReason::Quota(_))));
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_spent_exactly() {
    let api = FakeApi::new(None, Duration::from_millis(10));
    let mut settings = settings(Rate::Unlimited);
    settings.max_calls = Some(7);
    let ran = run_stage(api, &["1", "2"], settings, 30, Stop::default()).await;
    assert_eq!(Stats::get(&ran.stats.requests), 7);
    assert_eq!(ran.enriched(), 7);
    assert_eq!(ran.stopped, Some(StopReason::Budget));
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_the_stage_and_leaves_unreached_keys_alone() {
    let api = FakeApi::new(Some(Duration::from_secs(1)), Duration::from_millis(100));
    let stop = Stop::default();
    let trigger = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5500)).await;
        trigger.trigger(StopReason::Interrupted);
    });
    let ran = run_stage(api, &["1"], settings(Rate::PerSecond(1.0)), 50, stop).await;
    // Calls at 0, 1.03, ..., 5.15 s: six answers, nothing failed, no hang.
    assert_eq!(ran.enriched(), 6);
    assert!(ran.failed().is_empty());
    assert!(ran.elapsed < Duration::from_secs(6), "{:?}", ran.elapsed);
}

#[tokio::test(start_paused = true)]
async fn a_starting_instance_is_waited_for_and_its_keys_are_not_at_fault() {
    let api = FakeApi::new(None, Duration::ZERO);
    let starting = (400, "instance in starting process try later", None);
    api.script("79000000000@c.us", &[starting, starting, starting]);
    let ran = run_stage(api, &["1"], settings(Rate::Unlimited), 1, Stop::default()).await;
    assert_eq!(ran.enriched(), 1);
    assert!(ran.failed().is_empty());
    assert_eq!(Stats::get(&ran.stats.requests), 4);
    // Growing waits: 5 × backoff base (500 ms), then at least the time waited so far.
    assert_eq!(ran.elapsed, Duration::from_millis(2000));
}

/// Utilisation of a run of `keys` over `instances` at interval `limit`.
fn utilisation(ran: &Ran, keys: usize, instances: usize, limit: Duration) -> f64 {
    keys as f64 / instances as f64 * seconds(limit) / seconds(ran.elapsed)
}

fn share_429(ran: &Ran) -> f64 {
    Stats::get(&ran.stats.http_429) as f64 / Stats::get(&ran.stats.requests) as f64
}

#[tokio::test(start_paused = true)]
async fn the_margin_learns_the_arrival_jitter_and_keeps_429s_rare() {
    let limit = Duration::from_millis(100);
    let ids = ["1", "2", "3", "4"];
    for seed in [1, 2, 3] {
        // Jitter of 10 ms at a 100 ms interval: the best margin is about 9 ms.
        let api = FakeApi::jittery(
            limit,
            Duration::from_millis(10),
            Duration::from_millis(120),
            seed,
        );
        let ran = run_stage(
            api,
            &ids,
            settings(Rate::PerSecond(10.0)),
            1200,
            Stop::default(),
        )
        .await;
        assert_eq!(ran.enriched(), 1200);
        let (share, used) = (share_429(&ran), utilisation(&ran, 1200, 4, limit));
        assert!(share <= 0.01, "seed {seed}: 429 share {share}");
        assert!(used >= 0.87, "seed {seed}: utilisation {used}");
        let spacing = ran.stats.spacing_ms()["1"];
        assert!(
            (105.0..=115.0).contains(&spacing),
            "seed {seed}: spacing {spacing} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_jitter_the_margin_probes_down_to_the_limit() {
    let limit = Duration::from_millis(100);
    let api = FakeApi::jittery(limit, Duration::ZERO, Duration::from_millis(120), 1);
    let ran = run_stage(
        api,
        &["1", "2"],
        settings(Rate::PerSecond(10.0)),
        600,
        Stop::default(),
    )
    .await;
    assert_eq!(Stats::get(&ran.stats.http_429), 0);
    assert!(utilisation(&ran, 600, 2, limit) >= 0.97);
    assert!(ran.stats.spacing_ms()["1"] < 101.0);
}

#[test]
fn backoff_grows_is_capped_and_honours_retry_after() {
    let s = settings(Rate::Unlimited).fetch;
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
            Duration::from_secs(10)
        );
    }
}

#[test]
fn in_flight_limit_scales_with_rate() {
    assert_eq!(in_flight_limit(Rate::PerSecond(1.0)), 4);
    assert_eq!(in_flight_limit(Rate::PerSecond(5.0)), 20);
    // Never more than an unpaced instance.
    assert_eq!(in_flight_limit(Rate::PerSecond(10.0)), 32);
    assert_eq!(in_flight_limit(Rate::PerSecond(1e6)), 32);
    assert_eq!(in_flight_limit(Rate::Unlimited), 32);
}
